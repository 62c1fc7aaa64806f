// block_tq1_0 (54 bytes): qs[48] @0, qh[4] @48, d f16 @52. Five base-3 digits per qs byte,
// four per qh byte, stored as fixed-point fractions: digit n of byte q is
// ((q * 3^n) mod 256) * 3 >> 8. Elements [0,160): byte e % 32, digit e / 32; [160,240):
// byte 32 + (e-160) % 16, digit (e-160) / 16; [240,256): qh byte (e-240) % 4, digit
// (e-240) / 4. (dequantize_row_tq1_0)
const BLOCK_ELEMS: u32 = 256u;
const BLOCK_BYTES: u32 = 54u;

fn tq1_trit(q: u32, n: u32) -> i32 {
    let pow3 = array<u32, 5>(1u, 3u, 9u, 27u, 81u);
    let shifted = (q * pow3[n]) & 255u;
    return i32((shifted * 3u) >> 8u) - 1;
}

fn decode32(b: u32, sub: u32, out: ptr<function, array<f32, 32>>) {
    let d = w_f16(b + 52u);
    for (var l = 0u; l < 32u; l++) {
        let e = 32u * sub + l;
        var byte_offset: u32;
        var digit: u32;
        if (e < 160u) {
            byte_offset = e % 32u;
            digit = e / 32u;
        } else if (e < 240u) {
            byte_offset = 32u + (e - 160u) % 16u;
            digit = (e - 160u) / 16u;
        } else {
            byte_offset = 48u + (e - 240u) % 4u;
            digit = (e - 240u) / 4u;
        }
        (*out)[l] = f32(tq1_trit(w_u8(b + byte_offset), digit)) * d;
    }
}
