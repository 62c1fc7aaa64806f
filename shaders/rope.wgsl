// Rotary embedding in place, llama.cpp's "normal" mode: in each head, pairs (2i, 2i+1)
// for i < dims/2 rotate by (pos0 + row) / scale * theta^(-2i/dims).

struct RopeParams {
    n: u32,
    heads: u32,
    head_dim: u32,
    dims: u32,
    pos0: u32,
    theta: f32,
    scale: f32,
}

@group(0) @binding(0) var<uniform> p: RopeParams;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let pairs = p.dims / 2u;
    let i = gid.x + gid.y * nwg.x * 64u;
    if (i >= p.n * p.heads * pairs) {
        return;
    }
    let pair = i % pairs;
    let head = (i / pairs) % p.heads;
    let row = i / (pairs * p.heads);
    let pos = f32(p.pos0 + row) / p.scale;
    let angle = pos * pow(p.theta, -2.0 * f32(pair) / f32(p.dims));
    let c = cos(angle);
    let s = sin(angle);
    let o = row * p.heads * p.head_dim + head * p.head_dim + 2u * pair;
    let a = x[o];
    let b = x[o + 1u];
    x[o] = a * c - b * s;
    x[o + 1u] = a * s + b * c;
}
