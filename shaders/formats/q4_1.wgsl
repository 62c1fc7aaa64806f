// block_q4_1 (20 bytes): d f16 @0, m f16 @2, qs[16] @4 (nibbles as Q4_0). x = d * q + m.
// (dequantize_row_q4_1)
const BLOCK_ELEMS: u32 = 32u;
const BLOCK_BYTES: u32 = 20u;

fn decode32(b: u32, sub: u32, out: ptr<function, array<f32, 32>>) {
    let d = w_f16(b);
    let m = w_f16(b + 2u);
    for (var j = 0u; j < 16u; j++) {
        let q = w_u8(b + 4u + j);
        (*out)[j] = f32(q & 15u) * d + m;
        (*out)[j + 16u] = f32(q >> 4u) * d + m;
    }
}
