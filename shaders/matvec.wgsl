// y = W·x for 1..=MAX_COLS activation columns sharing one weight matrix (the decode
// path), or one expert per (token, slot) pair (matvec_id, with address_routed.wgsl).
//
// Each workgroup computes ROWS rows of job z = workgroup_id.z (split layout). Its WG invocations split k
// into 32-element units, decode each unit once in registers (`decode32` of the format
// part) and reuse it for every column. Sums are f32; the reduction part combines them.
// Short rows take ROWS_PER_LANE rows per invocation and no reduction; with one column,
// each unit of x is loaded once for those rows and goes through the format's `dot32`,
// which applies block scales once per block instead of per element.

const WG: u32 = 64u;
const MAX_COLS: u32 = 8u;
// Sums one invocation holds (rows x columns), in either layout.
const OUTPUTS: u32 = 32u;
// Rows per workgroup when rows are split over it (1..=8, ROWS · NCOLS <= OUTPUTS; the
// adapter's tuning table picks it, src/gpu/tuning.rs).
override ROWS: u32 = 4u;
// Lanes per row group when rows are split (a power of two dividing WG): the workgroup's
// lanes form WG / GROUP groups, each reducing its own ROWS rows, so that rows of few
// 32-element units still fill the lanes (split layout on GPUs). Every group's sums
// take their own slots of the reduction: (WG / GROUP) · ROWS · NCOLS <= OUTPUTS.
override GROUP: u32 = WG;
// Columns of this pipeline (1..=MAX_COLS), a pipeline-creation constant so that every
// loop over columns has a constant bound and the accumulators stay in registers.
override NCOLS: u32 = 1u;
// Short rows (few 32-element units), when > 0: each invocation computes this many whole
// rows, WG apart, with no cross-invocation reduction (ROWS_PER_LANE · NCOLS <= OUTPUTS).
// With one column, every load of the activations serves all of them.
override ROWS_PER_LANE: u32 = 0u;
// The rows are a stacked [gate; up] pair (short rows only): output row i is
// silu(gate_i · x) · (up_i · x), the SwiGLU fused into the product's epilogue, each lane
// computing both rows of its outputs (ROWS_PER_LANE · 2 · NCOLS <= OUTPUTS).
override SWIGLU: bool = false;

// 32 consecutive activations (one unit of one column), as 8 vec4, and their sum (which
// formats with a block minimum, Q4_1, multiply by it once per block).
struct Unit {
    v: array<vec4<f32>, 8>,
    sum: f32,
}

// Unit u of column c of job z: x[x_col + 32u ..][..32], times `scale` · the norm's
// weight when an RMSNorm is fused in (NORMED). Column starts are multiples of 4 (x4_at).
fn load_unit(z: u32, c: u32, u: u32, scale: f32) -> Unit {
    let xb = x_col(z, c) + 32u * u;
    var xv: Unit;
    var sum = vec4<f32>(0.0);
    for (var q = 0u; q < 8u; q++) {
        xv.v[q] = x4_at(xb + 4u * q);
        if (NORMED) {
            xv.v[q] *= scale * norm4(32u * u + 4u * q);
        }
        sum += xv.v[q];
    }
    xv.sum = dot(sum, vec4<f32>(1.0));
    return xv;
}

// 1 / sqrt(mean(x²) + eps) over column c of job z (the fused RMSNorm's scale).
fn rms_scale(z: u32, c: u32) -> f32 {
    var ss = vec4<f32>(0.0);
    for (var i = 0u; i < p.k; i += 4u) {
        let v = x4_at(x_col(z, c) + i);
        ss += v * v;
    }
    return inverseSqrt(dot(ss, vec4<f32>(1.0)) / f32(p.k) + p.eps);
}

// Σ_{i<32} wv[i] · xv[i] for a decoded unit.
fn dot_decoded(wv: ptr<function, array<f32, 32>>, xv: ptr<function, Unit>) -> f32 {
    var s = 0.0;
    for (var q = 0u; q < 8u; q++) {
        s += dot(vec4<f32>((*wv)[4u * q], (*wv)[4u * q + 1u], (*wv)[4u * q + 2u], (*wv)[4u * q + 3u]), (*xv).v[q]);
    }
    return s;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, lane: Lane) {
    load_lattice(lane.lid, WG);
    let z = wid.z;
    let j = job(z);
    let live = j.live && j.ncols > 0u;
    let n_groups = WG / GROUP;
    let group = lane.lid / GROUP;
    let block_rows = (wid.x + wid.y * nwg.x) * ROWS * n_groups;
    let row0 = block_rows + group * ROWS;
    let subs = BLOCK_ELEMS / 32u;
    var acc: array<f32, OUTPUTS>;
    // Per column: the fused RMSNorm's scale, or 1. Every lane computes it, in uniform
    // control flow, from the same loads of x.
    var scale: array<f32, MAX_COLS>;
    for (var c = 0u; c < NCOLS; c++) {
        scale[c] = 1.0;
        if (NORMED) {
            scale[c] = rms_scale(z, c);
        }
    }
    if (ROWS_PER_LANE > 0u) {
        // Every lane runs the loop over units and loads x (rows past the end are skipped
        // only around the weights) so that the loads of x stay in uniform control flow,
        // where they can be shared across lanes (activations_uniform.wgsl). x4_at needs
        // the column starts to be multiples of 4 (checked on the host for the uniform
        // binding).
        // With SWIGLU, output row i takes weight rows i (gate) and i + out_rows (up).
        let out_rows = select(p.rows, p.rows / 2u, SWIGLU);
        let halves = select(1u, 2u, SWIGLU);
        let first = (wid.x + wid.y * nwg.x) * WG * ROWS_PER_LANE + lane.lid;
        if (live) {
            for (var u = 0u; u < p.k / 32u; u++) {
                if (NCOLS == 1u) {
                    var xv = load_unit(z, 0u, u, scale[0]);
                    for (var r = 0u; r < ROWS_PER_LANE; r++) {
                        let i = first + r * WG;
                        if (i < out_rows) {
                            for (var h = 0u; h < halves; h++) {
                                let row = i + h * out_rows;
                                acc[r * halves + h] += dot32(block_at(j.w_row0 + row, u / subs), u % subs, &xv);
                            }
                        }
                    }
                } else {
                    for (var r = 0u; r < ROWS_PER_LANE * halves; r++) {
                        let i = first + (r / halves) * WG;
                        var wv: array<f32, 32>;
                        if (i < out_rows) {
                            let row = i + (r % halves) * out_rows;
                            decode32(block_at(j.w_row0 + row, u / subs), u % subs, &wv);
                        }
                        for (var c = 0u; c < NCOLS; c++) {
                            var xv = load_unit(z, c, u, scale[c]);
                            acc[r * NCOLS + c] += dot_decoded(&wv, &xv);
                        }
                    }
                }
            }
            for (var r = 0u; r < ROWS_PER_LANE; r++) {
                let i = first + r * WG;
                if (i < out_rows) {
                    for (var c = 0u; c < NCOLS; c++) {
                        var v = acc[r * halves * NCOLS + c];
                        if (SWIGLU) {
                            v = v / (1.0 + exp(-v)) * acc[(2u * r + 1u) * NCOLS + c];
                        }
                        emit(y_at(z, c, i), out_scale(z, c) * v);
                    }
                }
            }
        }
        return;
    }
    // Lane l takes units l, l + GROUP, ... of its group's rows: neighbouring lanes read
    // neighbouring units of the weights and of x (16-byte loads of x).
    for (var u = lane.lid % GROUP; u < p.k / 32u && live; u += GROUP) {
        let block = u / subs;
        let sub = u % subs;
        if (NCOLS == 1u) {
            // One load of the unit of x for all the rows, and the format's dot32 (block
            // scales once per unit).
            var xv = load_unit(z, 0u, u, scale[0]);
            for (var r = 0u; r < ROWS; r++) {
                let row = row0 + r;
                if (row < p.rows) {
                    acc[r] += dot32(block_at(j.w_row0 + row, block), sub, &xv);
                }
            }
        } else {
            for (var r = 0u; r < ROWS; r++) {
                let row = row0 + r;
                if (row < p.rows) {
                    var wv: array<f32, 32>;
                    decode32(block_at(j.w_row0 + row, block), sub, &wv);
                    for (var c = 0u; c < NCOLS; c++) {
                        var xv = load_unit(z, c, u, scale[c]);
                        acc[r * NCOLS + c] += dot_decoded(&wv, &xv);
                    }
                }
            }
        }
    }
    // Group g's sums go to slots g · ROWS · NCOLS ..; the other groups add 0 there.
    let per_group = ROWS * NCOLS;
    let n = n_groups * per_group;
    if (n_groups > 1u) {
        var spread: array<f32, OUTPUTS>;
        for (var i = 0u; i < n; i++) {
            spread[i] = select(0.0, acc[i % per_group], i / per_group == group);
        }
        acc = spread;
    }
    reduce_rows(lane, &acc, n);
    if (lane.lid < n) {
        let g = lane.lid / per_group;
        let r = (lane.lid % per_group) / NCOLS;
        let c = lane.lid % NCOLS;
        let row = block_rows + g * ROWS + r;
        if (row < p.rows && live) {
            emit(y_at(z, c, row), out_scale(z, c) * red[lane.lid]);
        }
    }
}
