// dot32 for block_q4_1 (layout in q4_1.wgsl): Σ (d·q + m)·x = d·Σ q·x + m·Σ x, so the
// quants are multiplied as integers-in-float and the block's scale and minimum applied
// once per block (dequantize_row_q4_1 folded into the dot product, as ggml's
// vec_dot_q4_1_q8_1 does with its precomputed sums; Σ x is the unit's, computed once
// for all the rows that share it).
// The 20-byte block starts at a word offset s (0..=3) into an aligned window of two vec4
// loads (rather than five word loads): words s..s+3 hold d, m and qs[0..12], word s+4
// (the second vec4's component s) holds qs[12..16].

fn dot32(b: u32, sub: u32, xv: ptr<function, Unit>) -> f32 {
    let o = b >> 2u;
    let s = o & 3u;
    let v0 = w[o >> 2u];
    let v1 = w[(o >> 2u) + 1u];
    let head = window4(v0, v1, s);
    let last = window4(v1, v1, s).x;
    let dm = unpack2x16float(head.x);
    let words = vec4<u32>(head.yzw, last);
    var s4 = 0.0;
    for (var i = 0u; i < 4u; i++) {
        let word = words[i];
        let lo = (*xv).v[i];
        let hi = (*xv).v[i + 4u];
        s4 += dot(bytes_f32(word & 0x0f0f0f0fu), lo) + dot(bytes_f32((word >> 4u) & 0x0f0f0f0fu), hi);
    }
    return s4 * dm.x + (*xv).sum * dm.y;
}
