// block_iq1_m (56 bytes): qs[32] @0, qh[16] @32 (per 16 elements: 3 high index bits of each
// group of 8 in bits 0..3 and 4..7, delta signs in bits 3 and 7), scales u16[4] @48 (a 3-bit
// scale per 16 elements; the f16 super-block scale in the top nibbles of the four words).
// x = d * (2s + 1) * (grid ± 0.125). (dequantize_row_iq1_m)
const BLOCK_ELEMS: u32 = 256u;
const BLOCK_BYTES: u32 = 56u;
const IQ1S_GRID_BASE: u32 = 128u;

fn decode32(b: u32, sub: u32, out: ptr<function, array<f32, 32>>) {
    let s0 = w_u16(b + 48u);
    let s1 = w_u16(b + 50u);
    let s2 = w_u16(b + 52u);
    let s3 = w_u16(b + 54u);
    let bits = (s0 >> 12u) | ((s1 >> 8u) & 0xf0u) | ((s2 >> 4u) & 0xf00u) | (s3 & 0xf000u);
    let d = unpack2x16float(bits).x;
    let sc = w_u16(b + 48u + 2u * (sub / 2u));
    for (var l = 0u; l < 4u; l++) {
        let s = (sc >> (6u * (sub % 2u) + 3u * (l / 2u))) & 7u;
        let dl = d * f32(2u * s + 1u);
        let h = w_u8(b + 32u + 2u * sub + l / 2u) >> (4u * (l % 2u));
        let idx = w_u8(b + 4u * sub + l) | ((h & 7u) << 8u);
        let delta = select(0.125, -0.125, (h & 8u) != 0u);
        let g = kgrid(IQ1S_GRID_BASE, idx);
        for (var j = 0u; j < 8u; j++) {
            let v = f32(i32((g >> (2u * j)) & 3u) - 1);
            (*out)[8u * l + j] = dl * (v + delta);
        }
    }
}
