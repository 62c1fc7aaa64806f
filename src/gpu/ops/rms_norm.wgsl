// out[r] = x[r] / sqrt(mean(x[r]²) + eps) * g, one workgroup per row (llama.cpp rms_norm
// followed by the weight multiply). Row r of x is the first `width` of the `x_stride`
// values from r * x_stride (MLA normalizes the latent part of a wider row); out is
// `[n][width]`.

struct NormParams {
    width: u32,
    n: u32,
    eps: f32,
    x_stride: u32,
}

@group(0) @binding(0) var<uniform> p: NormParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

const WG: u32 = 256u;
var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = wid.x;
    let base = row * p.x_stride;
    var s = 0.0;
    for (var i = lid; i < p.width; i += WG) {
        let v = x[base + i];
        s += v * v;
    }
    partial[lid] = s;
    workgroupBarrier();
    for (var step = WG / 2u; step > 0u; step >>= 1u) {
        if (lid < step) {
            partial[lid] += partial[lid + step];
        }
        workgroupBarrier();
    }
    let scale = 1.0 / sqrt(partial[0] / f32(p.width) + p.eps);
    for (var i = lid; i < p.width; i += WG) {
        out[row * p.width + i] = x[base + i] * scale * g[i];
    }
}
