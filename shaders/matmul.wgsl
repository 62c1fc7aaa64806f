// Tiled y = W·X for many activation columns (prefill and batches), or per-expert groups of
// (token, slot) pairs (matmul_id, with address_grouped.wgsl).
//
// A workgroup computes a TM x TN tile of job z = workgroup_id.z. For each 32-wide step
// along k, TM invocations decode one 32-element unit of their row into workgroup memory
// (no dequantized copy of W exists anywhere else), all invocations stage the TN x 32
// activation tile, and each invocation accumulates 4 rows x 4 columns of outputs in f32.
// The activation tile is stored k-major and an invocation's columns are 8 apart, so that
// neighbouring invocations read neighbouring words (vector loads, not gathers).
// Both tiles are stored with a row stride of 33 words, not 32: neighbouring invocations
// store at 32-word strides (a decoded row each, a column of x each), which with a stride
// of 32 would all land in one of a GPU's 32 shared-memory banks; 33 spreads them over
// all 32 (llama.cpp's mul_mm.comp pads its tiles the same way).

const TM: u32 = 64u;
const TN: u32 = 32u;
const MWG: u32 = 128u;
// Row stride of both tiles, in words.
const PAD: u32 = 33u;

var<workgroup> wt: array<f32, TM * PAD>;
var<workgroup> xt: array<f32, 32u * PAD>;

@compute @workgroup_size(MWG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let z = wid.z;
    let j = job(z);
    let ncols = select(0u, j.ncols, j.live);
    let row0 = wid.x * TM;
    let col0 = wid.y * TN;
    let subs = BLOCK_ELEMS / 32u;
    let tr = lid / 8u;
    let tc = lid % 8u;
    // Row tr*4 + a, columns tc + 8b for b = 0..4 as the vector lanes.
    var acc0 = vec4<f32>();
    var acc1 = vec4<f32>();
    var acc2 = vec4<f32>();
    var acc3 = vec4<f32>();
    var wv: array<f32, 32>;
    for (var u = 0u; u < p.k / 32u; u++) {
        if (lid < TM) {
            let row = row0 + lid;
            if (row < p.rows && ncols > 0u) {
                decode32(block_at(j.w_row0 + row, u / subs), u % subs, &wv);
            } else {
                wv = array<f32, 32>();
            }
            for (var i = 0u; i < 32u; i++) {
                wt[lid * PAD + i] = wv[i];
            }
        }
        for (var e = lid; e < TN * 32u; e += MWG) {
            let col = col0 + e / 32u;
            var v = 0.0;
            if (col < ncols) {
                v = x_at(x_col(z, col) + 32u * u + e % 32u);
            }
            xt[(e % 32u) * PAD + e / 32u] = v;
        }
        workgroupBarrier();
        for (var i = 0u; i < 32u; i++) {
            let xo = i * PAD + tc;
            let xv = vec4<f32>(xt[xo], xt[xo + 8u], xt[xo + 16u], xt[xo + 24u]);
            let wo = tr * 4u * PAD + i;
            acc0 += wt[wo] * xv;
            acc1 += wt[wo + PAD] * xv;
            acc2 += wt[wo + 2u * PAD] * xv;
            acc3 += wt[wo + 3u * PAD] * xv;
        }
        workgroupBarrier();
    }
    let rows4 = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    for (var a = 0u; a < 4u; a++) {
        for (var b = 0u; b < 4u; b++) {
            let row = row0 + tr * 4u + a;
            let col = col0 + tc + 8u * b;
            if (row < p.rows && col < ncols) {
                emit(y_at(z, col, row), out_scale(z, col) * rows4[a][b]);
            }
        }
    }
}
