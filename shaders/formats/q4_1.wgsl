// block_q4_1 (20 bytes): d f16 @0, m f16 @2, qs[16] @4; element j in the low nibble of
// qs[j], element j+16 in the high nibble. x = d * q + m. (dequantize_row_q4_1)
// Blocks are 20 bytes, so whole rows keep qs word-aligned: 4 u32 loads per block.
const BLOCK_ELEMS: u32 = 32u;
const BLOCK_BYTES: u32 = 20u;

fn decode32(b: u32, sub: u32, out: ptr<function, array<f32, 32>>) {
    let dm = unpack2x16float(wd(b >> 2u));
    for (var i = 0u; i < 4u; i++) {
        let word = wd((b >> 2u) + 1u + i);
        for (var k = 0u; k < 4u; k++) {
            let q = (word >> (8u * k)) & 0xffu;
            (*out)[4u * i + k] = f32(q & 15u) * dm.x + dm.y;
            (*out)[4u * i + k + 16u] = f32(q >> 4u) * dm.x + dm.y;
        }
    }
}
