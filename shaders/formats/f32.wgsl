// F32 rows, decoded 32 elements at a time.
const BLOCK_ELEMS: u32 = 32u;
const BLOCK_BYTES: u32 = 128u;

fn decode32(b: u32, sub: u32, out: ptr<function, array<f32, 32>>) {
    for (var i = 0u; i < 32u; i++) {
        (*out)[i] = bitcast<f32>(w[(b >> 2u) + i]);
    }
}
