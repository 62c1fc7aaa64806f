// F16 rows, decoded 32 elements at a time.
const BLOCK_ELEMS: u32 = 32u;
const BLOCK_BYTES: u32 = 64u;

// Weights bound as vec4<u32> (weights.wgsl): the unit at byte b is 4 vec4.
fn decode32(b: u32, sub: u32, out: ptr<function, array<f32, 32>>) {
    for (var i = 0u; i < 4u; i++) {
        let v = w[(b >> 4u) + i];
        for (var j = 0u; j < 4u; j++) {
            let pair = unpack2x16float(v[j]);
            (*out)[8u * i + 2u * j] = pair.x;
            (*out)[8u * i + 2u * j + 1u] = pair.y;
        }
    }
}
