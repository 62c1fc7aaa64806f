// block_q6_K (210 bytes): ql[128] @0 (low 4 bits), qh[64] @128 (high 2 bits), scales i8[16]
// @192, d f16 @208. Sub-block s: half n = s / 4, quarter t = s % 4; element l takes the
// low (t < 2) or high nibble of ql[64n + 32(t & 1) + l] and bits 2t of qh[32n + l];
// scale index 8n + 2t + l / 16. x = d * sc * (q - 32). (dequantize_row_q6_K)
const BLOCK_ELEMS: u32 = 256u;
const BLOCK_BYTES: u32 = 210u;

// Blocks are 210 bytes, so the unit's runs of 8 low-bit and 8 high-bit words start at
// even offsets: 9 aligned loads per run (`joined`), and its two scales one u16 (21 loads a
// unit instead of 35).
fn decode32(b: u32, sub: u32, out: ptr<function, array<f32, 32>>) {
    let d = w_f16(b + 208u);
    let n = sub / 4u;
    let t = sub % 4u;
    let nib = 4u * (t / 2u);
    let scales = w_u16(b + 192u + 8u * n + 2u * t);
    let sc0 = f32(sign_extend8(scales & 0xffu));
    let sc1 = f32(sign_extend8(scales >> 8u));
    let straddle = (b & 2u) != 0u;
    let lo0 = (b + 64u * n + 32u * (t & 1u)) >> 2u;
    let hi0 = (b + 128u + 32u * n) >> 2u;
    var lo_prev = wd(lo0);
    var hi_prev = wd(hi0);
    for (var i = 0u; i < 8u; i++) {
        let lo_next = wd(lo0 + i + 1u);
        let hi_next = wd(hi0 + i + 1u);
        let lo_word = joined(lo_prev, lo_next, straddle);
        let hi_word = joined(hi_prev, hi_next, straddle);
        lo_prev = lo_next;
        hi_prev = hi_next;
        let sc = select(sc0, sc1, i >= 4u);
        let q6 = ((lo_word >> nib) & 0x0f0f0f0fu) | (((hi_word >> (2u * t)) & 0x03030303u) << 4u);
        let q = d * sc * (bytes_f32(q6) - 32.0);
        for (var k = 0u; k < 4u; k++) {
            (*out)[4u * i + k] = q[k];
        }
    }
}
