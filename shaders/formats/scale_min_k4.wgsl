// get_scale_min_k4 (ggml-quants.c): (scale, min) of sub-block j of a Q4_K/Q5_K block
// from the 12 packed bytes at the word-aligned byte offset `s` (6 bits each), read as 3
// words and combined without a branch on j (lanes decoding different sub-blocks would
// run both sides on llvmpipe).
fn scale_min_k4(s: u32, j: u32) -> vec2<u32> {
    let shift = 8u * (j % 4u);
    let a = (wd(s >> 2u) >> shift) & 255u;
    let b = (wd((s >> 2u) + 1u) >> shift) & 255u;
    let c = (wd((s >> 2u) + 2u) >> shift) & 255u;
    let low = vec2<u32>(a & 63u, b & 63u);
    let high = vec2<u32>((c & 15u) | ((a >> 6u) << 4u), (c >> 4u) | ((b >> 6u) << 4u));
    return select(high, low, j < 4u);
}
