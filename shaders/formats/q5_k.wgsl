// block_q5_K (176 bytes): d f16 @0, dmin f16 @2, scales[12] @4 (6-bit scale and min per
// 32 elements, get_scale_min_k4 in scale_min_k4.wgsl), qh[32] @16, qs[128] @48. Sub-block s: low 4 bits from
// qs[32(s/2)..] (low nibbles for even s, high for odd), fifth bit = bit s of qh[l].
// x = d*sc*q - dmin*m. (dequantize_row_q5_K)
const BLOCK_ELEMS: u32 = 256u;
const BLOCK_BYTES: u32 = 176u;

// Blocks are 176 bytes, so every field is word-aligned: d and dmin one word, the scales 3,
// the unit's low bits 8 words and its high bits the 8 words of qh (20 loads a unit instead
// of 71).
fn decode32(b: u32, sub: u32, out: ptr<function, array<f32, 32>>) {
    let sm = scale_min_k4(b + 4u, sub);
    let dm = unpack2x16float(wd(b >> 2u));
    let d1 = dm.x * f32(sm.x);
    let m1 = dm.y * f32(sm.y);
    let shift = 4u * (sub & 1u);
    let q0 = (b + 48u + 32u * (sub / 2u)) >> 2u;
    let h0 = (b + 16u) >> 2u;
    for (var i = 0u; i < 8u; i++) {
        let word = wd(q0 + i) >> shift;
        let high = wd(h0 + i) >> sub;
        for (var k = 0u; k < 4u; k++) {
            let q = ((word >> (8u * k)) & 15u) | (((high >> (8u * k)) & 1u) << 4u);
            (*out)[4u * i + k] = d1 * f32(q) - m1;
        }
    }
}
