// acc[t][d] += Σ_j y[t * n_used + j][d]: the routed experts' (already weighted) outputs
// of each token summed into the residual stream (the expert aggregation of llama.cpp's
// build_moe_ffn, with the residual add fused in).

struct SumParams {
    n: u32,
    width: u32,
    n_used: u32,
}

@group(0) @binding(0) var<uniform> p: SumParams;
@group(0) @binding(1) var<storage, read> y: array<f32>;
@group(0) @binding(2) var<storage, read_write> acc: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.n * p.width) {
        return;
    }
    let t = i / p.width;
    let d = i % p.width;
    var s = 0.0;
    for (var j = 0u; j < p.n_used; j++) {
        s += y[(t * p.n_used + j) * p.width + d];
    }
    acc[i] += s;
}
