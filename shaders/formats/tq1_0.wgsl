// block_tq1_0 (54 bytes): qs[48] @0, qh[4] @48, d f16 @52. Five base-3 digits per qs byte,
// four per qh byte, stored as fixed-point fractions: digit n of byte q is
// ((q * 3^n) mod 256) * 3 >> 8. Elements [0,160): byte e % 32, digit e / 32; [160,240):
// byte 32 + (e-160) % 16, digit (e-160) / 16; [240,256): qh byte (e-240) % 4, digit
// (e-240) / 4. (dequantize_row_tq1_0)
const BLOCK_ELEMS: u32 = 256u;
const BLOCK_BYTES: u32 = 54u;

// 3^n for n in 0..=4, without indexing a local array (which llvmpipe does lane by lane).
fn pow3(n: u32) -> u32 {
    return select(select(select(select(1u, 3u, n == 1u), 9u, n == 2u), 27u, n == 3u), 81u, n == 4u);
}

// The base-3 digit of byte q whose place value is `mul` (= 3^n), as -1, 0 or +1.
fn tq1_trit(q: u32, mul: u32) -> i32 {
    return i32((((q * mul) & 255u) * 3u) >> 8u) - 1;
}

// Each unit reads 8 u32s, the same way for every unit (lanes of the reduced matvec
// decode different units at once, and llvmpipe runs both sides of a divergent branch):
// units 0-4 read qs[0..32] (digit = unit); units 5-7 read qs[32..48] twice (digits 0/1,
// 2/3, then 4), except that unit 7's second half reads the 4 qh bytes (digit = word).
fn decode32(b: u32, sub: u32, out: ptr<function, array<f32, 32>>) {
    let d = w_f16(b + 52u);
    let upper = sub >= 5u;
    let first = select(2u * (sub - 5u), 4u, sub == 7u);
    for (var i = 0u; i < 8u; i++) {
        let second_half = i >= 4u;
        let from_qh = sub == 7u && second_half;
        let offset = select(select(4u * i, 32u + 4u * (i % 4u), upper), 48u, from_qh);
        let digit = select(select(sub, first + u32(second_half), upper), i - 4u, from_qh);
        let word = w_u32(b + offset);
        let mul = pow3(digit);
        for (var k = 0u; k < 4u; k++) {
            (*out)[4u * i + k] = f32(tq1_trit((word >> (8u * k)) & 255u, mul)) * d;
        }
    }
}
