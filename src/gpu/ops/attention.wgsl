// Causal attention over a KV cache, one workgroup per (token, head). Query row t (position
// pos0 + t, `k_dim` values per head) attends cache positions 0..=pos0+t of its key head
// (grouped heads: head h uses key head h / (heads / kv_heads)); keys are `[pos][kv_heads *
// k_dim]`. Values of key head g at position s start at s * v_row + g * v_head in `vc`,
// which is the key cache itself for MLA (values are the first v_dim of each key) and a
// separate cache otherwise. Each of the WG invocations keeps an online softmax over every
// WG-th position; the partial results are merged through workgroup memory. Output is
// `[n][heads * v_dim]`. Value heads wider than MAX_HEAD_DIM (MLA's latent: 512 for R1)
// are split over workgroup_id.y, each slice of MAX_HEAD_DIM values recomputing the scores.

struct AttnParams {
    n: u32,
    heads: u32,
    kv_heads: u32,
    k_dim: u32,
    v_dim: u32,
    pos0: u32,
    scale: f32,
    v_row: u32,
    v_head: u32,
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
    let d0 = wid.y * MAX_HEAD_DIM;
    let v_len = min(MAX_HEAD_DIM, p.v_dim - d0);
    let head = wid.x % p.heads;
    let t = wid.x / p.heads;
    let kvh = head / (p.heads / p.kv_heads);
    let k_row = p.kv_heads * p.k_dim;
    let qo = t * p.heads * p.k_dim + head * p.k_dim;
    let oo = t * p.heads * p.v_dim + head * p.v_dim;
    let len = p.pos0 + t + 1u;
    var m = -3.0e38;
    var s = 0.0;
    var o: array<f32, MAX_HEAD_DIM>;
    for (var pos = lid; pos < len; pos += WG) {
        let ko = pos * k_row + kvh * p.k_dim;
        let vo = pos * p.v_row + kvh * p.v_head + d0;
        var dot = 0.0;
        for (var d = 0u; d < p.k_dim; d++) {
            dot += q[qo + d] * kc[ko + d];
        }
        let score = dot * p.scale;
        let m_new = max(m, score);
        let correction = exp(m - m_new);
        let e = exp(score - m_new);
        s = s * correction + e;
        for (var d = 0u; d < v_len; d++) {
            o[d] = o[d] * correction + e * vc[vo + d];
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
    for (var d = 0u; d < v_len; d++) {
        o_sh[lid * MAX_HEAD_DIM + d] = o[d] * c;
    }
    workgroupBarrier();
    var total = 0.0;
    for (var i = 0u; i < WG; i++) {
        total += s_sh[i];
    }
    for (var d = lid; d < v_len; d += WG) {
        var acc = 0.0;
        for (var i = 0u; i < WG; i++) {
            acc += o_sh[i * MAX_HEAD_DIM + d];
        }
        out[oo + d0 + d] = acc / total;
    }
}
