// block_q5_0 (22 bytes): d f16 @0, qh u32 @2 (fifth bit of element j is bit j), qs[16] @6.
// x = d * (q - 16). (dequantize_row_q5_0)
const BLOCK_ELEMS: u32 = 32u;
const BLOCK_BYTES: u32 = 22u;

fn decode32(b: u32, sub: u32, out: ptr<function, array<f32, 32>>) {
    let d = w_f16(b);
    let qh = w_u32(b + 2u);
    let qs = words4_at(b + 6u);
    for (var j = 0u; j < 16u; j++) {
        let q = (qs[j / 4u] >> (8u * (j % 4u))) & 255u;
        let h0 = ((qh >> j) << 4u) & 16u;
        let h1 = (qh >> (j + 12u)) & 16u;
        (*out)[j] = f32(i32((q & 15u) | h0) - 16) * d;
        (*out)[j + 16u] = f32(i32((q >> 4u) | h1) - 16) * d;
    }
}
