// Activations through a uniform binding (binding 2) of X_VEC4S 16-byte words of f32
// values (the pipeline prepends the constant). Used by the
// one-row-per-invocation matvec, where every invocation reads the same element at the
// same time: a uniform load at a uniform address is one load per subgroup, broadcast
// (llvmpipe: a scalar load instead of one per lane; GPUs: the constant cache), where a
// storage load is one per invocation. `x4_at(i)` needs i to be a multiple of 4.

@group(0) @binding(2) var<uniform> x: array<vec4<u32>, X_VEC4S>;

fn x4_at(i: u32) -> vec4<f32> {
    return bitcast<vec4<f32>>(x[i / 4u]);
}

fn x_at(i: u32) -> f32 {
    return x4_at(i & ~3u)[i & 3u];
}
