// block_q5_K (176 bytes): d f16 @0, dmin f16 @2, scales[12] @4 (6-bit scale and min per
// 32 elements, get_scale_min_k4 in scale_min_k4.wgsl), qh[32] @16, qs[128] @48. Sub-block s: low 4 bits from
// qs[32(s/2)..] (low nibbles for even s, high for odd), fifth bit = bit s of qh[l].
// x = d*sc*q - dmin*m. (dequantize_row_q5_K)
const BLOCK_ELEMS: u32 = 256u;
const BLOCK_BYTES: u32 = 176u;

fn decode32(b: u32, sub: u32, out: ptr<function, array<f32, 32>>) {
    let sm = scale_min_k4(b + 4u, sub);
    let d1 = w_f16(b) * f32(sm.x);
    let m1 = w_f16(b + 2u) * f32(sm.y);
    let shift = 4u * (sub & 1u);
    for (var l = 0u; l < 32u; l++) {
        let q = ((w_u8(b + 48u + 32u * (sub / 2u) + l) >> shift) & 15u) | (((w_u8(b + 16u + l) >> sub) & 1u) << 4u);
        (*out)[l] = d1 * f32(q) - m1;
    }
}
