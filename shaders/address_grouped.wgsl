// Addressing for `matmul_id`: the (token, slot) pairs are grouped by expert on the host.
// Job z is one expert: segments[3z..3z+3] = (slot in the pool, offset into `order`, count),
// and its columns are the pairs order[offset .. offset + count] (pair = token * n_used + j).
// route_w[pair] scales the result; output row `row` of a pair goes to y[pair * y_stride + row].

@group(0) @binding(5) var<storage, read> order: array<u32>;
@group(0) @binding(6) var<storage, read> segments: array<u32>;
@group(0) @binding(7) var<storage, read> route_w: array<f32>;

fn job(z: u32) -> Job {
    let slot = segments[3u * z];
    let live = slot >= p.first_slot && slot - p.first_slot < p.n_slots;
    return Job(live, select(0u, (slot - p.first_slot) * p.rows, live), segments[3u * z + 2u]);
}

fn pair(z: u32, c: u32) -> u32 {
    return order[segments[3u * z + 1u] + c];
}

fn x_col(z: u32, c: u32) -> u32 {
    return (pair(z, c) / p.x_group) * p.x_stride;
}

fn y_at(z: u32, c: u32, row: u32) -> u32 {
    return pair(z, c) * p.y_stride + row;
}

fn out_scale(z: u32, c: u32) -> f32 {
    return select(1.0, route_w[pair(z, c)], p.weighted != 0u);
}
