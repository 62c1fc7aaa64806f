// block_q8_0 (34 bytes): d f16 @0, qs i8[32] @2. x = d * q. (dequantize_row_q8_0)
const BLOCK_ELEMS: u32 = 32u;
const BLOCK_BYTES: u32 = 34u;

fn decode32(b: u32, sub: u32, out: ptr<function, array<f32, 32>>) {
    let d = w_f16(b);
    for (var i = 0u; i < 32u; i++) {
        (*out)[i] = f32(sign_extend8(w_u8(b + 2u + i))) * d;
    }
}
