// dot32 for block_q4_1 (layout in q4_1.wgsl): Σ (d·q + m)·x = d·Σ q·x + m·Σ x, so the
// quants are multiplied as integers-in-float and the block's scale and minimum applied
// once per block (dequantize_row_q4_1 folded into the dot product, as ggml's
// vec_dot_q4_1_q8_1 does with its precomputed sums).

fn dot32(b: u32, sub: u32, xv: ptr<function, Unit>) -> f32 {
    let dm = unpack2x16float(w[b >> 2u]);
    var s = 0.0;
    var sx = vec4<f32>(0.0);
    for (var i = 0u; i < 4u; i++) {
        let word = w[(b >> 2u) + 1u + i];
        let lo = (*xv)[i];
        let hi = (*xv)[i + 4u];
        s += dot(vec4<f32>(unpack4xU8(word & 0x0f0f0f0fu)), lo) + dot(vec4<f32>(unpack4xU8((word >> 4u) & 0x0f0f0f0fu)), hi);
        sx += lo + hi;
    }
    return s * dm.x + dot(sx, vec4<f32>(1.0)) * dm.y;
}
