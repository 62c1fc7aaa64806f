// dot32 for block_q4_0 (layout in q4_0.wgsl): Σ d·(q - 8)·x = d·(Σ q·x - 8·Σ x), the
// scale applied once per block (dequantize_row_q4_0 folded into the dot product).

fn dot32(b: u32, sub: u32, xv: ptr<function, Unit>) -> f32 {
    var s = 0.0;
    var sx = vec4<f32>(0.0);
    let qs = words4_at(b + 2u);
    for (var i = 0u; i < 4u; i++) {
        let word = qs[i];
        let lo = (*xv).v[i];
        let hi = (*xv).v[i + 4u];
        s += dot(bytes_f32(word & 0x0f0f0f0fu), lo) + dot(bytes_f32((word >> 4u) & 0x0f0f0f0fu), hi);
        sx += lo + hi;
    }
    return w_f16(b) * (s - 8.0 * dot(sx, vec4<f32>(1.0)));
}
