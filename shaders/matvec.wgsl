// y = W·x for 1..=MAX_COLS activation columns sharing one weight matrix (the decode
// path), or one expert per (token, slot) pair (matvec_id, with address_routed.wgsl).
//
// Each workgroup computes ROWS rows of job z = workgroup_id.z. Its WG invocations split k
// into 32-element units, decode each unit once in registers (`decode32` of the format
// part) and reuse it for every column. Sums are f32; the reduction part combines them.

const WG: u32 = 64u;
const ROWS: u32 = 4u;
const MAX_COLS: u32 = 8u;
const OUTPUTS: u32 = ROWS * MAX_COLS;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, lane: Lane) {
    let z = wid.z;
    let j = job(z);
    let ncols = select(0u, min(j.ncols, MAX_COLS), j.live);
    // Outputs are packed as acc[r * ucols + c]; ucols is uniform, so only the live
    // outputs are reduced.
    let ucols = min(uniform_cols(), MAX_COLS);
    let row0 = (wid.x + wid.y * nwg.x) * ROWS;
    let subs = BLOCK_ELEMS / 32u;
    let row_bytes = (p.k / BLOCK_ELEMS) * BLOCK_BYTES;
    var acc: array<f32, OUTPUTS>;
    var wv: array<f32, 32>;
    for (var u = lane.lid; u < p.k / 32u; u += WG) {
        let block = u / subs;
        let sub = u % subs;
        for (var r = 0u; r < ROWS; r++) {
            let row = row0 + r;
            if (row >= p.rows || ncols == 0u) {
                break;
            }
            decode32((j.w_row0 + row) * row_bytes + block * BLOCK_BYTES, sub, &wv);
            for (var c = 0u; c < ncols; c++) {
                let xb = x_col(z, c) + 32u * u;
                var s = 0.0;
                for (var i = 0u; i < 32u; i++) {
                    s += wv[i] * f32(x[xb + i]);
                }
                acc[r * ucols + c] += s;
            }
        }
    }
    reduce_rows(lane, &acc, ROWS * ucols);
    if (lane.lid < ROWS * ucols) {
        let r = lane.lid / ucols;
        let c = lane.lid % ucols;
        if (row0 + r < p.rows && c < ncols) {
            y[y_at(z, c, row0 + r)] = out_scale(z, c) * red[lane.lid];
        }
    }
}
