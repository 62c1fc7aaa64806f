// Activations through a storage binding (binding 2): any length, one load per value and
// invocation. `x_at(i)` is element i, `x4_at(i)` elements i..i+3.

@group(0) @binding(2) var<storage, read> x: array<f32>;

fn x_at(i: u32) -> f32 {
    return x[i];
}

fn x4_at(i: u32) -> vec4<f32> {
    return vec4<f32>(x[i], x[i + 1u], x[i + 2u], x[i + 3u]);
}
