// Addressing for `matvec_id`: job z is one (token, slot) pair, z = token * n_used + j.
// ids[z] is the routed expert, slot_of[expert] its slot in the weight pool (the bound
// chunk holds slots [first_slot, first_slot + n_slots)), and route_w[z] scales the
// result. Output row `row` of pair z goes to y[z * y_stride + row].
//
// Two slot values are not slots. OTHER_WAVE: the expert is resident in another wave of
// this step (the scheduler runs the pairs of a step that needs more experts than the
// pool holds in several waves), so the pair is left for that wave. NOT_RESIDENT: a bug in
// the scheduler; the pair is not computed and `fault` records it (word 0 set, word 1 the
// expert), which the host reads with the step's results and turns into an error.

@group(0) @binding(5) var<storage, read> ids: array<u32>;
@group(0) @binding(6) var<storage, read> slot_of: array<u32>;
@group(0) @binding(7) var<storage, read> route_w: array<f32>;
@group(0) @binding(8) var<storage, read_write> fault: array<atomic<u32>, 2>;

const NOT_RESIDENT: u32 = 0xffffffffu;

fn job(z: u32) -> Job {
    let expert = ids[z];
    let slot = slot_of[expert];
    if z < p.n_pairs && slot == NOT_RESIDENT {
        atomicStore(&fault[0], 1u);
        atomicStore(&fault[1], expert);
    }
    let live = z < p.n_pairs && slot >= p.first_slot && slot - p.first_slot < p.n_slots;
    return Job(live, select(0u, (slot - p.first_slot) * p.rows, live), 1u);
}

fn x_col(z: u32, c: u32) -> u32 {
    return (z / p.x_group) * p.x_stride;
}

fn y_at(z: u32, c: u32, row: u32) -> u32 {
    return z * p.y_stride + row;
}

fn out_scale(z: u32, c: u32) -> f32 {
    return select(1.0, route_w[z], p.weighted != 0u);
}
