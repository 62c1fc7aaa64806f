// The weight of an RMSNorm fused into the product that consumes it (binding 5, uniform,
// NORM_VEC4S 16-byte words; the pipeline prepends the constant): the product's input is
// x / sqrt(mean(x²) + eps) · weight, llama.cpp's rms_norm followed by its mul
// (ggml_rms_norm, ggml/src/ggml-cpu/ops.cpp). Read at uniform addresses, like the
// uniform activations. `norm4(i)`: weights i..i+3, i a multiple of 4.

@group(0) @binding(5) var<uniform> norm_w: array<vec4<f32>, NORM_VEC4S>;

const NORMED: bool = true;

fn norm4(i: u32) -> vec4<f32> {
    return norm_w[i / 4u];
}
