// block_q8_0 (34 bytes): d f16 @0, qs i8[32] @2. x = d * q. (dequantize_row_q8_0)
// The 32 quants are read as 8 u32 words (9 loads: a block starts at an even offset, so qs
// may straddle words by 2 bytes), 4 quants per word.
const BLOCK_ELEMS: u32 = 32u;
const BLOCK_BYTES: u32 = 34u;

fn decode32(b: u32, sub: u32, out: ptr<function, array<f32, 32>>) {
    let d = w_f16(b);
    let q0 = (b + 2u) >> 2u;
    let straddle = ((b + 2u) & 2u) != 0u;
    var lo = wd(q0);
    for (var i = 0u; i < 8u; i++) {
        let hi = wd(q0 + i + 1u);
        let word = joined(lo, hi, straddle);
        lo = hi;
        let q = sbytes_f32(word) * d;
        for (var k = 0u; k < 4u; k++) {
            (*out)[4u * i + k] = q[k];
        }
    }
}
