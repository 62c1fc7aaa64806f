// block_q4_1 (20 bytes): d f16 @0, m f16 @2, qs[16] @4; element j in the low nibble of
// qs[j], element j+16 in the high nibble. x = d * q + m. (dequantize_row_q4_1)
// Blocks are 20 bytes, so whole rows keep qs word-aligned: 4 u32 loads per block.
const BLOCK_ELEMS: u32 = 32u;
const BLOCK_BYTES: u32 = 20u;

fn decode32(b: u32, sub: u32, out: ptr<function, array<f32, 32>>) {
    let dm = unpack2x16float(wd(b >> 2u));
    for (var i = 0u; i < 4u; i++) {
        let word = wd((b >> 2u) + 1u + i);
        let lo = bytes_f32(word & 0x0f0f0f0fu) * dm.x + dm.y;
        let hi = bytes_f32((word >> 4u) & 0x0f0f0f0fu) * dm.x + dm.y;
        for (var k = 0u; k < 4u; k++) {
            (*out)[4u * i + k] = lo[k];
            (*out)[4u * i + k + 16u] = hi[k];
        }
    }
}
