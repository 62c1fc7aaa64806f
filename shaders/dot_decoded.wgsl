// dot32 for formats without a dot part of their own: decode the unit (`decode32`), then
// multiply by the activations (`dot_decoded` in matvec.wgsl). `dot32(b, sub, &xv)` =
// Σ_{i<32} W[unit sub of the block at byte b][i] · xv[i], xv one unit of activations
// (`load_unit`).

fn dot32(b: u32, sub: u32, xv: ptr<function, Unit>) -> f32 {
    var wv: array<f32, 32>;
    decode32(b, sub, &wv);
    return dot_decoded(&wv, xv);
}
