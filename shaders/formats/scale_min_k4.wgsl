// get_scale_min_k4 (ggml-quants.c): (scale, min) of sub-block j of a Q4_K/Q5_K block
// from the 12 packed bytes at `s` (6 bits each).
fn scale_min_k4(s: u32, j: u32) -> vec2<u32> {
    if (j < 4u) {
        return vec2<u32>(w_u8(s + j) & 63u, w_u8(s + j + 4u) & 63u);
    }
    let sc = (w_u8(s + j + 4u) & 15u) | ((w_u8(s + j - 4u) >> 6u) << 4u);
    let m = (w_u8(s + j + 4u) >> 4u) | ((w_u8(s + j) >> 6u) << 4u);
    return vec2<u32>(sc, m);
}
