// dot32 for formats without a dot part of their own: decode the unit (`decode32`), then
// multiply by the activations (`dot_decoded` in matvec.wgsl). `dot32(b, sub, xb)` =
// Σ_{i<32} W[unit sub of the block at byte b][i] · x[xb + i]; xb a multiple of 4 (x4_at).

fn dot32(b: u32, sub: u32, xb: u32) -> f32 {
    var wv: array<f32, 32>;
    decode32(b, sub, &wv);
    return dot_decoded(&wv, xb);
}
