// y = W·x for 1..=MAX_COLS activation columns sharing one weight matrix (the decode
// path), or one expert per (token, slot) pair (matvec_id, with address_routed.wgsl).
//
// Each workgroup computes ROWS rows of job z = workgroup_id.z. Its WG invocations split k
// into 32-element units, decode each unit once in registers (`decode32` of the format
// part) and reuse it for every column. Sums are f32; the reduction part combines them.
// Short rows take one invocation per row; with one column, each unit goes through the
// format's `dot32`, which applies block scales once per block instead of per element.

const WG: u32 = 64u;
const ROWS: u32 = 4u;
const MAX_COLS: u32 = 8u;
const OUTPUTS: u32 = ROWS * MAX_COLS;
// Columns of this pipeline (1..=MAX_COLS), a pipeline-creation constant so that every
// loop over columns has a constant bound and the accumulators stay in registers.
override NCOLS: u32 = 1u;
// Short rows (few 32-element units): each invocation computes a whole row, WG rows per
// workgroup, with no cross-invocation reduction.
override ROW_PER_INVOCATION: bool = false;

// Σ_{i<32} wv[i] · x[xb + i] for a decoded unit (x4_at: xb a multiple of 4 when x is
// the uniform binding).
fn dot_decoded(wv: ptr<function, array<f32, 32>>, xb: u32) -> f32 {
    var s = 0.0;
    for (var q = 0u; q < 8u; q++) {
        s += dot(vec4<f32>((*wv)[4u * q], (*wv)[4u * q + 1u], (*wv)[4u * q + 2u], (*wv)[4u * q + 3u]), x4_at(xb + 4u * q));
    }
    return s;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, lane: Lane) {
    let z = wid.z;
    let j = job(z);
    let live = j.live && j.ncols > 0u;
    let row0 = (wid.x + wid.y * nwg.x) * ROWS;
    let subs = BLOCK_ELEMS / 32u;
    let row_bytes = (p.k / BLOCK_ELEMS) * BLOCK_BYTES;
    var acc: array<f32, OUTPUTS>;
    if (ROW_PER_INVOCATION) {
        // Every lane runs the loop (the last row stands in for rows past the end) so that
        // the loads of x stay in uniform control flow, where they can be shared across
        // lanes (activations_uniform.wgsl); only the store is guarded. x4_at needs the
        // column starts to be multiples of 4 (checked on the host for the uniform binding).
        let row_id = (wid.x + wid.y * nwg.x) * WG + lane.lid;
        let row = min(row_id, p.rows - 1u);
        if (live) {
            for (var u = 0u; u < p.k / 32u; u++) {
                let b = (j.w_row0 + row) * row_bytes + (u / subs) * BLOCK_BYTES;
                if (NCOLS == 1u) {
                    acc[0] += dot32(b, u % subs, x_col(z, 0u) + 32u * u);
                } else {
                    var wv: array<f32, 32>;
                    decode32(b, u % subs, &wv);
                    for (var c = 0u; c < NCOLS; c++) {
                        acc[c] += dot_decoded(&wv, x_col(z, c) + 32u * u);
                    }
                }
            }
            if (row_id < p.rows) {
                for (var c = 0u; c < NCOLS; c++) {
                    emit(y_at(z, c, row), out_scale(z, c) * acc[c]);
                }
            }
        }
        return;
    }
    for (var u = lane.lid; u < p.k / 32u; u += WG) {
        let block = u / subs;
        let sub = u % subs;
        for (var r = 0u; r < ROWS; r++) {
            let row = row0 + r;
            if (row < p.rows && live) {
                var wv: array<f32, 32>;
                decode32((j.w_row0 + row) * row_bytes + block * BLOCK_BYTES, sub, &wv);
                for (var c = 0u; c < NCOLS; c++) {
                    acc[r * NCOLS + c] += dot_decoded(&wv, x_col(z, c) + 32u * u);
                }
            }
        }
    }
    reduce_rows(lane, &acc, ROWS * NCOLS);
    if (lane.lid < ROWS * NCOLS) {
        let r = lane.lid / NCOLS;
        let c = lane.lid % NCOLS;
        if (row0 + r < p.rows && live) {
            emit(y_at(z, c, row0 + r), out_scale(z, c) * red[lane.lid]);
        }
    }
}
