// F16 rows, decoded 32 elements at a time.
const BLOCK_ELEMS: u32 = 32u;
const BLOCK_BYTES: u32 = 64u;

fn decode32(b: u32, sub: u32, out: ptr<function, array<f32, 32>>) {
    for (var i = 0u; i < 16u; i++) {
        let pair = unpack2x16float(w[(b >> 2u) + i]);
        (*out)[2u * i] = pair.x;
        (*out)[2u * i + 1u] = pair.y;
    }
}
