// Tiled y = W·X for many activation columns (prefill and batches), or per-expert groups of
// (token, slot) pairs (matmul_id, with address_grouped.wgsl).
//
// A workgroup computes a TM x TN tile of job z = workgroup_id.z (TN, 32 or 64, is prepended
// by the host, with the tiles' element type). For each 32-wide step along k, every invocation loads: the first TM decode
// one 32-element unit of their row into workgroup memory (no dequantized copy of W exists
// anywhere else), the other TM stage the TN x 32 activation tile with 16-byte loads,
// eight neighbouring invocations reading one column's 128 contiguous bytes. Then each
// invocation accumulates 8 rows x TN / 16 columns of outputs in f32: per step of k,
// 8 + TN / 16 loads from workgroup memory for 8 · TN / 16 FMAs.
// Both tiles are swizzled instead of padded (which would not fit 16 KiB): element i of
// row r lives at word (i ^ (r % 32)) of its 32-word row, and x[c][i] at word c ^ i of
// k-row i. The invocations that store a tile (a decoded row each, four k of a column
// each) or read it (8 rows, columns 16 apart) then touch 32 distinct banks of a GPU's 32
// where the plain layout would put them in one or a few (llama.cpp's mul_mm.comp pads
// instead).

const TM: u32 = 64u;
const MWG: u32 = 128u;
// Output rows and columns of one invocation.
const RPT: u32 = 8u;
const CPT: u32 = TN / 16u;

// `Tile` (prepended by the host) is f16 where the device has shader-f16, else f32.
var<workgroup> wt: array<Tile, TM * 32u>;
var<workgroup> xt: array<Tile, 32u * TN>;

@compute @workgroup_size(MWG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let z = wid.z;
    let j = job(z);
    let ncols = select(0u, j.ncols, j.live);
    let row0 = wid.x * TM;
    let col0 = wid.y * TN;
    let subs = BLOCK_ELEMS / 32u;
    // Rows tr·8 + a, columns tc + 16·b.
    let tr = lid / 16u;
    let tc = lid % 16u;
    var acc: array<f32, RPT * CPT>;
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
                wt[lid * 32u + (i ^ (lid & 31u))] = Tile(wv[i]);
            }
        } else {
            // TN columns x 8 vec4s of the unit, TM invocations.
            for (var e = lid - TM; e < TN * 8u; e += MWG - TM) {
                let c = e / 8u;
                let i0 = 4u * (e % 8u);
                var v = vec4<f32>(0.0);
                if (col0 + c < ncols) {
                    v = x4_at(x_col(z, col0 + c) + 32u * u + i0);
                }
                for (var q = 0u; q < 4u; q++) {
                    xt[(i0 + q) * TN + (c ^ (i0 + q))] = Tile(v[q]);
                }
            }
        }
        workgroupBarrier();
        for (var i = 0u; i < 32u; i++) {
            var xv: array<f32, CPT>;
            for (var b = 0u; b < CPT; b++) {
                xv[b] = f32(xt[i * TN + ((tc + 16u * b) ^ i)]);
            }
            for (var a = 0u; a < RPT; a++) {
                let r = tr * RPT + a;
                let wa = f32(wt[r * 32u + (i ^ (r & 31u))]);
                for (var b = 0u; b < CPT; b++) {
                    acc[a * CPT + b] += wa * xv[b];
                }
            }
        }
        workgroupBarrier();
    }
    for (var a = 0u; a < RPT; a++) {
        for (var b = 0u; b < CPT; b++) {
            let row = row0 + tr * RPT + a;
            let col = col0 + tc + 16u * b;
            if (row < p.rows && col < ncols) {
                emit(y_at(z, col, row), out_scale(z, col) * acc[a * CPT + b]);
            }
        }
    }
}
