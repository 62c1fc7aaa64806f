// block_q2_K (84 bytes): scales[16] @0 (low nibble scale, high nibble min), qs[64] @16,
// d f16 @80, dmin f16 @82. Sub-block s of 32: half h = s / 4 uses qs[32h..32h+32] shifted
// by 2 * (s % 4); scale index 8h + 2(s % 4) + l / 16. x = d*sc*q - dmin*m.
// (dequantize_row_q2_K)
const BLOCK_ELEMS: u32 = 256u;
const BLOCK_BYTES: u32 = 84u;

// Blocks are 84 bytes, so b is a multiple of 4 and every field is read by whole words:
// d and dmin share one, the unit's two scale bytes are one u16, and each half of the
// unit's quants is 4 words (10 loads a unit instead of 36 byte loads).
fn decode32(b: u32, sub: u32, out: ptr<function, array<f32, 32>>) {
    let dm = unpack2x16float(wd((b + 80u) >> 2u));
    let half = sub / 4u;
    let shift = 2u * (sub % 4u);
    let scales = w_u16(b + half * 8u + (sub % 4u) * 2u);
    for (var part = 0u; part < 2u; part++) {
        let sc = (scales >> (8u * part)) & 0xffu;
        let dl = dm.x * f32(sc & 15u);
        let ml = dm.y * f32(sc >> 4u);
        let q0 = (b + 16u + 32u * half + 16u * part) >> 2u;
        for (var i = 0u; i < 4u; i++) {
            let q = dl * bytes_f32((wd(q0 + i) >> shift) & 0x03030303u) - ml;
            for (var k = 0u; k < 4u; k++) {
                (*out)[16u * part + 4u * i + k] = q[k];
            }
        }
    }
}
