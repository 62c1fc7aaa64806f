// Expert selection, one invocation per token, as llama.cpp's build_moe_ffn
// (src/llama-graph.cpp) and the reference `Router::select` in src/backend.rs:
// probabilities from the gate (softmax or sigmoid); selection scores = probabilities +
// bias; with groups, only the `groups_used` groups with the largest sum of their two best
// selection scores compete; the n_used best scores win (ties: lower index first). Weights
// are the winners' probabilities, normalized (sum clamped below at 2^-14) and scaled.
// Writes ids[t * n_used + j] and weights[t * n_used + j], best first.

struct RouteParams {
    n: u32,
    n_expert: u32,
    n_used: u32,
    // 0: softmax, 1: sigmoid.
    sigmoid: u32,
    groups: u32,
    groups_used: u32,
    normalize: u32,
    has_bias: u32,
    scale: f32,
}

@group(0) @binding(0) var<uniform> p: RouteParams;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> ids: array<u32>;
@group(0) @binding(4) var<storage, read_write> weights: array<f32>;

const MAX_EXPERTS: u32 = 512u;
const MAX_GROUPS: u32 = 64u;
const NONE: f32 = -3.0e38;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = gid.x + gid.y * nwg.x * 64u;
    if (t >= p.n) {
        return;
    }
    let base = t * p.n_expert;
    var probs: array<f32, MAX_EXPERTS>;
    var sel: array<f32, MAX_EXPERTS>;
    var max_l = NONE;
    for (var e = 0u; e < p.n_expert; e++) {
        max_l = max(max_l, logits[base + e]);
    }
    var sum = 0.0;
    for (var e = 0u; e < p.n_expert; e++) {
        let l = logits[base + e];
        if (p.sigmoid != 0u) {
            probs[e] = 1.0 / (1.0 + exp(-l));
        } else {
            probs[e] = exp(l - max_l);
            sum += probs[e];
        }
    }
    for (var e = 0u; e < p.n_expert; e++) {
        if (p.sigmoid == 0u) {
            probs[e] /= sum;
        }
        sel[e] = probs[e] + select(0.0, bias[e], p.has_bias != 0u);
    }
    if (p.groups > 1u && p.groups_used < p.groups) {
        let per = p.n_expert / p.groups;
        var score: array<f32, MAX_GROUPS>;
        for (var g = 0u; g < p.groups; g++) {
            var a = NONE;
            var b = NONE;
            for (var e = g * per; e < (g + 1u) * per; e++) {
                if (sel[e] > a) {
                    b = a;
                    a = sel[e];
                } else if (sel[e] > b) {
                    b = sel[e];
                }
            }
            score[g] = a + b;
        }
        var kept: array<bool, MAX_GROUPS>;
        for (var k = 0u; k < p.groups_used; k++) {
            var best = 0u;
            var best_v = NONE;
            var found = false;
            for (var g = 0u; g < p.groups; g++) {
                if (!kept[g] && (!found || score[g] > best_v)) {
                    best = g;
                    best_v = score[g];
                    found = true;
                }
            }
            kept[best] = true;
        }
        for (var e = 0u; e < p.n_expert; e++) {
            if (!kept[e / per]) {
                sel[e] = NONE;
            }
        }
    }
    var chosen: array<bool, MAX_EXPERTS>;
    var total = 0.0;
    for (var j = 0u; j < p.n_used; j++) {
        var best = 0u;
        var found = false;
        for (var e = 0u; e < p.n_expert; e++) {
            if (!chosen[e] && (!found || sel[e] > sel[best])) {
                best = e;
                found = true;
            }
        }
        chosen[best] = true;
        ids[t * p.n_used + j] = best;
        weights[t * p.n_used + j] = probs[best];
        total += probs[best];
    }
    let div = select(1.0, max(total, 6.103515625e-5), p.normalize != 0u);
    for (var j = 0u; j < p.n_used; j++) {
        weights[t * p.n_used + j] = weights[t * p.n_used + j] / div * p.scale;
    }
}
