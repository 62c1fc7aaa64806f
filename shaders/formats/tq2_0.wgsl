// block_tq2_0 (66 bytes): qs[64] @0, d f16 @64. Sub-block s: byte group g = s / 4, shift
// 2(s % 4); element l is (qs[32g + l] >> shift) & 3, minus 1. (dequantize_row_tq2_0)
const BLOCK_ELEMS: u32 = 256u;
const BLOCK_BYTES: u32 = 66u;

// The unit's 32 quant bytes start at an even offset: 9 aligned word loads (`joined`),
// instead of 2 u16 loads per word.
fn decode32(b: u32, sub: u32, out: ptr<function, array<f32, 32>>) {
    let d = w_f16(b + 64u);
    let shift = 2u * (sub % 4u);
    let o = b + 32u * (sub / 4u);
    let q0 = o >> 2u;
    let straddle = (o & 2u) != 0u;
    var lo = wd(q0);
    for (var i = 0u; i < 8u; i++) {
        let hi = wd(q0 + i + 1u);
        let word = joined(lo, hi, straddle);
        lo = hi;
        let q = (bytes_f32((word >> shift) & 0x03030303u) - 1.0) * d;
        for (var k = 0u; k < 4u; k++) {
            (*out)[4u * i + k] = q[k];
        }
    }
}
