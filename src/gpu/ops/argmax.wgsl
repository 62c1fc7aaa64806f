// out[r] = the index of the largest of x[r][0..width] as an f32 (exact below 2^24), the
// first of equals, and 0 when no value exceeds -inf (all -inf or NaN): lowbit's
// `sample::argmax`, the greedy choice, so that a token needs a 4-byte read-back.
// One workgroup per row; each invocation scans a strided part, then a tree reduction
// keeps the larger value, or the smaller index of equal ones.

struct ArgmaxParams {
    width: u32,
    n: u32,
}

@group(0) @binding(0) var<uniform> p: ArgmaxParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

const WG: u32 = 256u;
const NONE: u32 = 0xffffffffu;

var<workgroup> best_v: array<f32, WG>;
var<workgroup> best_i: array<u32, WG>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    let row = wg.x;
    var v = 0.0;
    var at = NONE;
    if (row < p.n) {
        let base = row * p.width;
        for (var i = lane; i < p.width; i += WG) {
            let xi = x[base + i];
            // The first value must exceed -inf (which f32's lowest finite value does not).
            if ((at == NONE && xi >= -3.40282347e38) || (at != NONE && xi > v)) {
                v = xi;
                at = i;
            }
        }
    }
    best_v[lane] = v;
    best_i[lane] = at;
    workgroupBarrier();
    for (var half = WG / 2u; half > 0u; half /= 2u) {
        if (lane < half) {
            let ov = best_v[lane + half];
            let oi = best_i[lane + half];
            if (oi != NONE && (best_i[lane] == NONE || ov > best_v[lane] || (ov == best_v[lane] && oi < best_i[lane]))) {
                best_v[lane] = ov;
                best_i[lane] = oi;
            }
        }
        workgroupBarrier();
    }
    if (lane == 0u && row < p.n) {
        out[row] = f32(select(best_i[0], 0u, best_i[0] == NONE));
    }
}
