// dot32 for block_q8_0 (layout and word reads as in q8_0.wgsl): Σ d·q·x = d·Σ q·x, the
// scale applied once per block (dequantize_row_q8_0 folded into the dot product).

fn dot32(b: u32, sub: u32, xv: ptr<function, Unit>) -> f32 {
    let q0 = (b + 2u) >> 2u;
    let straddle = ((b + 2u) & 2u) != 0u;
    var lo = w[q0];
    var s = 0.0;
    for (var i = 0u; i < 8u; i++) {
        let hi = w[q0 + i + 1u];
        let word = select(lo, (lo >> 16u) | (hi << 16u), straddle);
        lo = hi;
        s += dot(vec4<f32>(unpack4xI8(word)), (*xv)[i]);
    }
    return w_f16(b) * s;
}
