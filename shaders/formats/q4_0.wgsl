// block_q4_0 (18 bytes): d f16 @0, qs[16] @2; element j in the low nibble of qs[j],
// element j+16 in the high nibble. x = d * (q - 8). (dequantize_row_q4_0)
const BLOCK_ELEMS: u32 = 32u;
const BLOCK_BYTES: u32 = 18u;

fn decode32(b: u32, sub: u32, out: ptr<function, array<f32, 32>>) {
    let d = w_f16(b);
    let qs = words4_at(b + 2u);
    for (var i = 0u; i < 4u; i++) {
        let lo = (bytes_f32(qs[i] & 0x0f0f0f0fu) - 8.0) * d;
        let hi = (bytes_f32((qs[i] >> 4u) & 0x0f0f0f0fu) - 8.0) * d;
        for (var k = 0u; k < 4u; k++) {
            (*out)[4u * i + k] = lo[k];
            (*out)[4u * i + k + 16u] = hi[k];
        }
    }
}
