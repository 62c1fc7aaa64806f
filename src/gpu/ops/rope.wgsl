// Rotary embedding in place, llama.cpp's "normal" mode (ggml_rope_ext, ggml/src/ggml-cpu/ops.cpp):
// in each of the first `heads` heads of `head_dim` values of each row of `stride` values,
// the pairs (offset + 2i, offset + 2i + 1) for i < pairs rotate by (pos0 + row) * freq[i]
// and are multiplied by mscale. The host
// computes the frequencies (plain, linear or YaRN scaling: src/backend.rs `Rope::new`).

struct RopeParams {
    n: u32,
    heads: u32,
    head_dim: u32,
    offset: u32,
    pairs: u32,
    pos0: u32,
    mscale: f32,
    stride: u32,
    // freq[i] = freqs[i / 4][i % 4]; up to 128 pairs (MAX_ROPE_DIMS in src/backend.rs).
    freqs: array<vec4<f32>, 32>,
}

@group(0) @binding(0) var<uniform> p: RopeParams;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if (i >= p.n * p.heads * p.pairs) {
        return;
    }
    let pair = i % p.pairs;
    let head = (i / p.pairs) % p.heads;
    let row = i / (p.pairs * p.heads);
    let angle = f32(p.pos0 + row) * p.freqs[pair / 4u][pair % 4u];
    let c = cos(angle);
    let s = sin(angle);
    let o = row * p.stride + head * p.head_dim + p.offset + 2u * pair;
    let a = x[o];
    let b = x[o + 1u];
    x[o] = (a * c - b * s) * p.mscale;
    x[o + 1u] = (a * s + b * c) * p.mscale;
}
