// block_iq1_m (56 bytes): qs[32] @0, qh[16] @32 (per 16 elements: 3 high index bits of each
// group of 8 in bits 0..3 and 4..7, delta signs in bits 3 and 7), scales u16[4] @48 (a 3-bit
// scale per 16 elements; the f16 super-block scale in the top nibbles of the four words).
// x = d * (2s + 1) * (grid ± 0.125). (dequantize_row_iq1_m)
const BLOCK_ELEMS: u32 = 256u;
const BLOCK_BYTES: u32 = 56u;
const IQ1S_GRID_BASE: u32 = 128u;

// Blocks are 56 bytes, so b is a multiple of 4: the scales are two words, the unit's qh
// one u16 and its qs one word (4 loads a unit besides the grid, instead of 13).
fn decode32(b: u32, sub: u32, out: ptr<function, array<f32, 32>>) {
    let s01 = wd((b + 48u) >> 2u);
    let s23 = wd((b + 52u) >> 2u);
    let bits = ((s01 >> 12u) & 0xfu) | ((s01 >> 24u) & 0xf0u) | ((s23 >> 4u) & 0xf00u) | ((s23 >> 16u) & 0xf000u);
    let d = unpack2x16float(bits).x;
    let pair = select(s01, s23, sub >= 4u);
    let sc = (pair >> (16u * ((sub / 2u) % 2u))) & 0xffffu;
    let qh = w_u16(b + 32u + 2u * sub);
    let qs = wd((b >> 2u) + sub);
    for (var l = 0u; l < 4u; l++) {
        let s = (sc >> (6u * (sub % 2u) + 3u * (l / 2u))) & 7u;
        let dl = d * f32(2u * s + 1u);
        let h = qh >> (8u * (l / 2u) + 4u * (l % 2u));
        let idx = ((qs >> (8u * l)) & 255u) | ((h & 7u) << 8u);
        let delta = select(0.125, -0.125, (h & 8u) != 0u);
        let g = kgrid(IQ1S_GRID_BASE, idx);
        for (var j = 0u; j < 8u; j++) {
            let v = f32(i32((g >> (2u * j)) & 3u) - 1);
            (*out)[8u * l + j] = dl * (v + delta);
        }
    }
}
