// No RMSNorm fused into the product (the other part of norm_uniform.wgsl's interface).

const NORMED: bool = false;

fn norm4(i: u32) -> vec4<f32> {
    return vec4<f32>(1.0);
}
