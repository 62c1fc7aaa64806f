// Elementwise ops over `n` rows of `width` values: `swiglu` (out = silu(a) * b; a's rows
// `a_stride` apart, b's `b_stride` apart from `b_offset`, so that a and b may be the two
// halves of the rows of one stacked gate and up product). out is `[n][width]`. Residual
// adds are fused into the products that produce them (`Output::add`).

struct EwParams {
    width: u32,
    n: u32,
    a_stride: u32,
    b_stride: u32,
    b_offset: u32,
}

@group(0) @binding(0) var<uniform> p: EwParams;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

fn index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 256u;
}

@compute @workgroup_size(256)
fn swiglu(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i < p.n * p.width) {
        let row = i / p.width;
        let c = i % p.width;
        let g = a[row * p.a_stride + c];
        out[i] = g / (1.0 + exp(-g)) * b[row * p.b_stride + p.b_offset + c];
    }
}
