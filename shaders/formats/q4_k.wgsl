// block_q4_K (144 bytes): d f16 @0, dmin f16 @2, scales[12] @4 (6-bit scale and min per
// 32 elements, get_scale_min_k4 in scale_min_k4.wgsl), qs[128] @16. Sub-block s: bytes qs[32(s/2)..], low
// nibbles for even s, high for odd. x = d*sc*q - dmin*m. (dequantize_row_q4_K)
const BLOCK_ELEMS: u32 = 256u;
const BLOCK_BYTES: u32 = 144u;

// Blocks are 144 bytes, so every field is word-aligned: d and dmin one word, the scales 3,
// the unit's quants 8 (12 loads a unit instead of 24).
fn decode32(b: u32, sub: u32, out: ptr<function, array<f32, 32>>) {
    let sm = scale_min_k4(b + 4u, sub);
    let dm = unpack2x16float(wd(b >> 2u));
    let d1 = dm.x * f32(sm.x);
    let m1 = dm.y * f32(sm.y);
    let shift = 4u * (sub & 1u);
    let q0 = (b + 16u + 32u * (sub / 2u)) >> 2u;
    for (var i = 0u; i < 8u; i++) {
        let q = d1 * bytes_f32((wd(q0 + i) >> shift) & 0x0f0f0f0fu) - m1;
        for (var k = 0u; k < 4u; k++) {
            (*out)[4u * i + k] = q[k];
        }
    }
}
