// F32 rows, decoded 32 elements at a time.
const BLOCK_ELEMS: u32 = 32u;
const BLOCK_BYTES: u32 = 128u;

// Weights bound as vec4<u32> (weights.wgsl): the unit at byte b is 8 vec4.
fn decode32(b: u32, sub: u32, out: ptr<function, array<f32, 32>>) {
    for (var i = 0u; i < 8u; i++) {
        let v = bitcast<vec4<f32>>(w[(b >> 4u) + i]);
        (*out)[4u * i] = v.x;
        (*out)[4u * i + 1u] = v.y;
        (*out)[4u * i + 2u] = v.z;
        (*out)[4u * i + 3u] = v.w;
    }
}
