// block_iq2_xxs (66 bytes): d f16 @0, then per 32 elements two u32: four 8-bit indices into
// iq2xxs_grid, and four 7-bit sign fields plus a 4-bit scale s in bits 28..32. Grid levels
// 0, 1, 2 decode to 8, 25, 43; the 8th sign bit makes the parity even.
// x = d * (0.5 + s) / 4 * grid * sign. (dequantize_row_iq2_xxs)
const BLOCK_ELEMS: u32 = 256u;
const BLOCK_BYTES: u32 = 66u;
// Offset of kgrid_2bit_256 in the `grid` binding.
const IQ2XXS_GRID_BASE: u32 = 0u;

fn decode32(b: u32, sub: u32, out: ptr<function, array<f32, 32>>) {
    let levels = array<f32, 4>(8.0, 25.0, 43.0, 0.0);
    let d = w_f16(b);
    let aux0 = w_u32(b + 2u + 8u * sub);
    let aux1 = w_u32(b + 6u + 8u * sub);
    let db = d * (0.5 + f32(aux1 >> 28u)) * 0.25;
    for (var l = 0u; l < 4u; l++) {
        let g = kgrid(IQ2XXS_GRID_BASE, (aux0 >> (8u * l)) & 255u);
        let s7 = (aux1 >> (7u * l)) & 127u;
        let signs = s7 | ((countOneBits(s7) & 1u) << 7u);
        for (var j = 0u; j < 8u; j++) {
            let v = levels[(g >> (2u * j)) & 3u];
            let sign = select(1.0, -1.0, ((signs >> j) & 1u) != 0u);
            (*out)[8u * l + j] = db * v * sign;
        }
    }
}
