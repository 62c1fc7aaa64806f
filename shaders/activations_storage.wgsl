// Activations through a storage binding (binding 2) of vec4s: any length (activation
// buffers are allocated in whole 16-byte words), `x4_at(i)` one 16-byte load for
// elements i..i+3 (i a multiple of 4: column starts are), `x_at(i)` element i.

@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;

fn x_at(i: u32) -> f32 {
    return x[i >> 2u][i & 3u];
}

fn x4_at(i: u32) -> vec4<f32> {
    return x[i >> 2u];
}
