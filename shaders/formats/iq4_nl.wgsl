// block_iq4_nl (18 bytes): d f16 @0, qs[16] @2. Element j (< 16) is the low nibble of
// qs[j], element j + 16 the high nibble, each an index into the non-linear table
// kvalues_iq4nl. x = d * kvalues[q]. (dequantize_row_iq4_nl)
const BLOCK_ELEMS: u32 = 32u;
const BLOCK_BYTES: u32 = 18u;

const KVALUES_IQ4NL = array<i32, 16>(-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113);

fn decode32(b: u32, sub: u32, out: ptr<function, array<f32, 32>>) {
    let d = w_f16(b);
    var kv = KVALUES_IQ4NL;
    let qs = words4_at(b + 2u);
    for (var j = 0u; j < 16u; j++) {
        let q = (qs[j / 4u] >> (8u * (j % 4u))) & 255u;
        (*out)[j] = d * f32(kv[q & 15u]);
        (*out)[j + 16u] = d * f32(kv[q >> 4u]);
    }
}
