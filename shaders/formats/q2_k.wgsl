// block_q2_K (84 bytes): scales[16] @0 (low nibble scale, high nibble min), qs[64] @16,
// d f16 @80, dmin f16 @82. Sub-block s of 32: half h = s / 4 uses qs[32h..32h+32] shifted
// by 2 * (s % 4); scale index 8h + 2(s % 4) + l / 16. x = d*sc*q - dmin*m.
// (dequantize_row_q2_K)
const BLOCK_ELEMS: u32 = 256u;
const BLOCK_BYTES: u32 = 84u;

fn decode32(b: u32, sub: u32, out: ptr<function, array<f32, 32>>) {
    let d = w_f16(b + 80u);
    let dmin = w_f16(b + 82u);
    let half = sub / 4u;
    let shift = 2u * (sub % 4u);
    for (var part = 0u; part < 2u; part++) {
        let sc = w_u8(b + half * 8u + (sub % 4u) * 2u + part);
        let dl = d * f32(sc & 15u);
        let ml = dmin * f32(sc >> 4u);
        for (var l = 0u; l < 16u; l++) {
            let q = (w_u8(b + 16u + 32u * half + 16u * part + l) >> shift) & 3u;
            (*out)[16u * part + l] = dl * f32(q) - ml;
        }
    }
}
