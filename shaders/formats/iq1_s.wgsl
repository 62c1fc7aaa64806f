// block_iq1_s (50 bytes): d f16 @0, qs[32] @2 (low 8 bits of 11-bit grid indices), qh u16[8]
// @34: per 32 elements, 3 high index bits per group of 8 (bits 3k..3k+3), scale s in bits
// 12..15, delta sign in bit 15. Grid levels 0, 1, 2 decode to -1, 0, 1.
// x = d * (2s + 1) * (grid ± 0.125). (dequantize_row_iq1_s)
const BLOCK_ELEMS: u32 = 256u;
const BLOCK_BYTES: u32 = 50u;
// Offset of kgrid_1bit_2048 in the `grid` binding (after the 128 words of IQ2_XXS).
const IQ1S_GRID_BASE: u32 = 128u;

fn decode32(b: u32, sub: u32, out: ptr<function, array<f32, 32>>) {
    let d = w_f16(b);
    let qh = w_u16(b + 34u + 2u * sub);
    let dl = d * f32(2u * ((qh >> 12u) & 7u) + 1u);
    let delta = select(0.125, -0.125, (qh & 0x8000u) != 0u);
    let qs = w_u32(b + 2u + 4u * sub);
    for (var l = 0u; l < 4u; l++) {
        let idx = ((qs >> (8u * l)) & 255u) | (((qh >> (3u * l)) & 7u) << 8u);
        let g = kgrid(IQ1S_GRID_BASE, idx);
        for (var j = 0u; j < 8u; j++) {
            let v = f32(i32((g >> (2u * j)) & 3u) - 1);
            (*out)[8u * l + j] = dl * (v + delta);
        }
    }
}
