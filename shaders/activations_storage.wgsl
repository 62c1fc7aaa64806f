// Activations through a storage binding (binding 2): any length, one load per value and
// invocation. `x_at(i)` is element i, `x4_at(i)` elements i..i+3.

@group(0) @binding(2) var<storage, read> x: array<ACT>;

fn x_at(i: u32) -> f32 {
    return f32(x[i]);
}

fn x4_at(i: u32) -> vec4<f32> {
    return vec4<f32>(f32(x[i]), f32(x[i + 1u]), f32(x[i + 2u]), f32(x[i + 3u]));
}
