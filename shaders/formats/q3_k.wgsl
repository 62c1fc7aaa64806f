// block_q3_K (110 bytes): hmask[32] @0, qs[64] @32, scales[12] @96 (16 6-bit scales), d f16
// @108. Sub-block s of 32: half h = s / 4 uses qs[32h..32h+32] shifted by 2 * (s % 4);
// the high bit of element l is bit s of hmask[l] (set: +0, clear: -4); scale index
// 8h + 2(s % 4) + l / 16, stored as 4 low bits in byte i % 8 (nibble i / 8) and 2 high
// bits in byte 8 + i % 4 (bits 2(i / 4)). x = d * (sc - 32) * (q - 4·!hbit).
// (dequantize_row_q3_K)
const BLOCK_ELEMS: u32 = 256u;
const BLOCK_BYTES: u32 = 110u;

fn q3_scale(b: u32, i: u32) -> i32 {
    let lo = (w_u8(b + 96u + i % 8u) >> (4u * (i / 8u))) & 15u;
    let hi = (w_u8(b + 104u + i % 4u) >> (2u * (i / 4u))) & 3u;
    return i32(lo | (hi << 4u)) - 32;
}

// The quants and high bits of each half-unit are read as 4 u32s each (blocks are 110
// bytes, so at even offsets: 2 u16 loads a word), 32 loads a unit instead of 64 byte loads.
fn decode32(b: u32, sub: u32, out: ptr<function, array<f32, 32>>) {
    let d = w_f16(b + 108u);
    let half = sub / 4u;
    let shift = 2u * (sub % 4u);
    for (var part = 0u; part < 2u; part++) {
        let dl = d * f32(q3_scale(b, half * 8u + (sub % 4u) * 2u + part));
        for (var i = 0u; i < 4u; i++) {
            let qs = w_u32(b + 32u + 32u * half + 16u * part + 4u * i) >> shift;
            let hmask = w_u32(b + 16u * part + 4u * i) >> sub;
            for (var k = 0u; k < 4u; k++) {
                let q = i32((qs >> (8u * k)) & 3u);
                let h = select(4, 0, ((hmask >> (8u * k)) & 1u) != 0u);
                (*out)[16u * part + 4u * i + k] = dl * f32(q - h);
            }
        }
    }
}
