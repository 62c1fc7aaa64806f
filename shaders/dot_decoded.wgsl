// dot32 for formats without a dot part of their own: decode the unit (`decode32`), then
// multiply by the activations. `dot32(b, sub, xb)` = Σ_{i<32} W[unit sub of the block at
// byte b][i] · x[xb + i]; xb a multiple of 4 (x4_at).

fn dot32(b: u32, sub: u32, xb: u32) -> f32 {
    var wv: array<f32, 32>;
    decode32(b, sub, &wv);
    var s = 0.0;
    for (var q = 0u; q < 8u; q++) {
        s += dot(vec4<f32>(wv[4u * q], wv[4u * q + 1u], wv[4u * q + 2u], wv[4u * q + 3u]), x4_at(xb + 4u * q));
    }
    return s;
}
