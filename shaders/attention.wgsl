// Causal attention over a KV cache, one workgroup per (token, head). Query row t (position
// pos0 + t) attends cache positions 0..=pos0+t of its KV head (grouped heads: head h uses
// KV head h / (heads / kv_heads)). Each of the WG invocations keeps an online softmax over
// every WG-th position; the partial results are merged through workgroup memory.

struct AttnParams {
    n: u32,
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    pos0: u32,
    scale: f32,
}

@group(0) @binding(0) var<uniform> p: AttnParams;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> kc: array<f32>;
@group(0) @binding(3) var<storage, read> vc: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

const WG: u32 = 16u;
const MAX_HEAD_DIM: u32 = 128u;
var<workgroup> m_sh: array<f32, WG>;
var<workgroup> s_sh: array<f32, WG>;
var<workgroup> o_sh: array<f32, WG * MAX_HEAD_DIM>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let head = wid.x % p.heads;
    let t = wid.x / p.heads;
    let kvh = head / (p.heads / p.kv_heads);
    let kv_width = p.kv_heads * p.head_dim;
    let qo = t * p.heads * p.head_dim + head * p.head_dim;
    let len = p.pos0 + t + 1u;
    var m = -3.0e38;
    var s = 0.0;
    var o: array<f32, MAX_HEAD_DIM>;
    for (var pos = lid; pos < len; pos += WG) {
        let ko = pos * kv_width + kvh * p.head_dim;
        var dot = 0.0;
        for (var d = 0u; d < p.head_dim; d++) {
            dot += q[qo + d] * kc[ko + d];
        }
        let score = dot * p.scale;
        let m_new = max(m, score);
        let correction = exp(m - m_new);
        let e = exp(score - m_new);
        s = s * correction + e;
        for (var d = 0u; d < p.head_dim; d++) {
            o[d] = o[d] * correction + e * vc[ko + d];
        }
        m = m_new;
    }
    m_sh[lid] = m;
    workgroupBarrier();
    var m_all = m_sh[0];
    for (var i = 1u; i < WG; i++) {
        m_all = max(m_all, m_sh[i]);
    }
    let c = exp(m - m_all);
    s_sh[lid] = s * c;
    for (var d = 0u; d < p.head_dim; d++) {
        o_sh[lid * MAX_HEAD_DIM + d] = o[d] * c;
    }
    workgroupBarrier();
    var total = 0.0;
    for (var i = 0u; i < WG; i++) {
        total += s_sh[i];
    }
    for (var d = lid; d < p.head_dim; d += WG) {
        var acc = 0.0;
        for (var i = 0u; i < WG; i++) {
            acc += o_sh[i * MAX_HEAD_DIM + d];
        }
        out[qo + d] = acc / total;
    }
}
