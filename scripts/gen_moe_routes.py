#!/usr/bin/env python3
"""Independent float64 numpy forward pass of the trained deepseek2 fixture (tiny-moe-f16.gguf),
written from llama.cpp's deepseek2 graph and the DeepSeek-V3 paper, not from lowbit, to give
exact per-position router decisions for tests/routing.rs.

Usage: python3 scripts/gen_moe_routes.py [--check] [--stats N] [--chunks 0,128,...] [--out PATH]

- Weights from gguf-py (F16 -> float64 exactly); tokens from the fixture's Hugging Face
  tokenizer.json (python `tokenizers`), which the fixture README says equals llama.cpp's.
- --check: the 64-token prompt against ../shared/fixtures/ref-logits-llamacpp.f32 (llama.cpp);
  prints max |delta| and argmax agreement, and fails beyond 1e-2 of max |logit|.
- --stats N: recompute routing.json's per-layer statistics (load histogram, consecutive
  reuse) on the first N chunks and print them next to routing.json's (N = 512: all of them).
  Measured with --check --stats 512: max |delta| 0.0023 against llama.cpp (max |logit| 16.5),
  argmax 64/64; per layer every expert's load within 7 of routing.json's (of ~16,300), reuse and
  mean overlap within 2e-4. (About 1 s a chunk.)
- --out: writes, for each chunk in --chunks (llama-perplexity protocol: chunk j is tokens
  [256 j, 256 j + 256) of the whole file tokenized with BOS, its first token made BOS), the
  token ids and, for each position and MoE layer, the 4 experts (best first), their weights,
  and the margin between the 4th and 5th biased score (how close the choice is to a tie).
"""
import json
import os
import sys
import numpy as np
from gguf import GGUFReader
from gguf.constants import GGMLQuantizationType as QT

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, '..', '..', 'shared', 'fixtures')
CTX = 256


def field(r, key):
    return r.fields[key].contents()


def load(path):
    r = GGUFReader(path)
    W = {}
    for t in r.tensors:
        ne = [int(x) for x in t.shape]
        assert t.tensor_type in (QT.F16, QT.F32), (t.name, t.tensor_type)
        a = np.asarray(t.data).reshape(-1).astype(np.float64)
        W[t.name] = a.reshape(list(reversed(ne)))
    a = 'deepseek2.'
    cfg = dict(
        n_layer=field(r, a + 'block_count'), n_head=field(r, a + 'attention.head_count'),
        eps=float(field(r, a + 'attention.layer_norm_rms_epsilon')),
        base=float(field(r, a + 'rope.freq_base')), n_rot=field(r, a + 'rope.dimension_count'),
        kv_lora=field(r, a + 'attention.kv_lora_rank'),
        k_mla=field(r, a + 'attention.key_length_mla'),
        n_dense=field(r, a + 'leading_dense_block_count'),
        n_expert=field(r, a + 'expert_count'), n_used=field(r, a + 'expert_used_count'),
        n_group=field(r, a + 'expert_group_count'), n_group_used=field(r, a + 'expert_group_used_count'),
        w_scale=float(field(r, a + 'expert_weights_scale')), w_norm=bool(field(r, a + 'expert_weights_norm')),
        gating=field(r, a + 'expert_gating_func'))
    assert cfg['gating'] == 2, 'sigmoid gating'
    assert 'deepseek2.rope.scaling.type' not in r.fields
    return W, cfg


def rmsnorm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def rope_adjacent(x, pos, base):
    """llama.cpp's 'normal' rotation (deepseek2 uses it): pairs (2i, 2i+1), theta_i = pos base^(-2i/d).
    x: (T, ..., d)."""
    d = x.shape[-1]
    inv = base ** (-np.arange(d // 2, dtype=np.float64) * 2.0 / d)
    ang = pos.astype(np.float64)[:, None] * inv[None, :]
    shape = (x.shape[0],) + (1,) * (x.ndim - 2) + (d // 2,)
    c, s = np.cos(ang).reshape(shape), np.sin(ang).reshape(shape)
    x0, x1 = x[..., 0::2], x[..., 1::2]
    y = np.empty_like(x)
    y[..., 0::2] = x0 * c - x1 * s
    y[..., 1::2] = x0 * s + x1 * c
    return y


def route(logits, bias, cfg):
    """DeepSeek-V3 noaux_tc: sigmoid scores; selection on score + bias, limited to the
    n_group_used groups with the largest sum of their two best biased scores; weights are the
    unbiased scores of the chosen experts, normalized, times w_scale."""
    s = 1.0 / (1.0 + np.exp(-logits))                       # (T, E)
    sb = s + bias
    T, E = s.shape
    G = cfg['n_group']
    g = sb.reshape(T, G, E // G)
    gscore = np.sort(g, axis=-1)[:, :, -2:].sum(-1)          # (T, G)
    keep_g = np.argsort(-gscore, axis=-1, kind='stable')[:, :cfg['n_group_used']]
    mask = np.full((T, G), False)
    np.put_along_axis(mask, keep_g, True, axis=1)
    masked = np.where(np.repeat(mask, E // G, axis=1), sb, -np.inf)
    order = np.argsort(-masked, axis=-1, kind='stable')
    ids = order[:, :cfg['n_used']]
    fifth = np.take_along_axis(masked, order[:, cfg['n_used']:cfg['n_used'] + 1], 1)[:, 0]
    fourth = np.take_along_axis(masked, ids[:, -1:], 1)[:, 0]
    # Group margin: the kept group with the smallest score against the best dropped group.
    gs = np.sort(gscore, axis=-1)[:, ::-1]
    gmargin = gs[:, cfg['n_group_used'] - 1] - gs[:, cfg['n_group_used']]
    w = np.take_along_axis(s, ids, 1)
    if cfg['w_norm']:
        w = w / w.sum(-1, keepdims=True)
    w = w * cfg['w_scale']
    return ids, w, np.minimum(fourth - fifth, gmargin)


def forward(W, cfg, ids):
    T = len(ids)
    eps, H, kv_lora = cfg['eps'], cfg['n_head'], cfg['kv_lora']
    n_rot = cfg['n_rot']
    nope = cfg['k_mla'] - n_rot
    scale = 1.0 / np.sqrt(cfg['k_mla'])
    pos = np.arange(T)
    mask = np.triu(np.full((T, T), -np.inf), k=1)
    x = W['token_embd.weight'][np.asarray(ids)]
    routes = {}
    for il in range(cfg['n_layer']):
        p = f'blk.{il}.'
        h = rmsnorm(x, W[p + 'attn_norm.weight'], eps)
        q = rmsnorm(h @ W[p + 'attn_q_a.weight'].T, W[p + 'attn_q_a_norm.weight'], eps) @ W[p + 'attn_q_b.weight'].T
        q = q.reshape(T, H, nope + n_rot)
        q_nope, q_pe = q[..., :nope], rope_adjacent(q[..., nope:], pos, cfg['base'])
        kv = h @ W[p + 'attn_kv_a_mqa.weight'].T                  # (T, kv_lora + rope)
        c = rmsnorm(kv[:, :kv_lora], W[p + 'attn_kv_a_norm.weight'], eps)
        k_pe = rope_adjacent(kv[:, None, kv_lora:], pos, cfg['base'])[:, 0]   # (T, rope), one for all heads
        kb = W[p + 'attn_k_b.weight']                              # (H, kv_lora, nope)
        vb = W[p + 'attn_v_b.weight']                              # (H, v_head, kv_lora)
        outs = []
        for hh in range(H):
            k_nope = c @ kb[hh]                                     # (T, nope): per-head keys from the latent
            sc = (q_nope[:, hh] @ k_nope.T + q_pe[:, hh] @ k_pe.T) * scale + mask
            sc -= sc.max(1, keepdims=True)
            pr = np.exp(sc)
            pr /= pr.sum(1, keepdims=True)
            outs.append((pr @ c) @ vb[hh].T)                        # (T, v_head)
        x = x + np.concatenate(outs, axis=1) @ W[p + 'attn_output.weight'].T
        h = rmsnorm(x, W[p + 'ffn_norm.weight'], eps)
        silu = lambda v: v / (1.0 + np.exp(-v))
        if il < cfg['n_dense']:
            x = x + (silu(h @ W[p + 'ffn_gate.weight'].T) * (h @ W[p + 'ffn_up.weight'].T)) @ W[p + 'ffn_down.weight'].T
            continue
        e_ids, e_w, margin = route(h @ W[p + 'ffn_gate_inp.weight'].T, W[p + 'exp_probs_b.bias'], cfg)
        routes[il] = (e_ids, e_w, margin)
        y = (silu(h @ W[p + 'ffn_gate_shexp.weight'].T) * (h @ W[p + 'ffn_up_shexp.weight'].T)) @ W[p + 'ffn_down_shexp.weight'].T
        G, U, D = W[p + 'ffn_gate_exps.weight'], W[p + 'ffn_up_exps.weight'], W[p + 'ffn_down_exps.weight']
        for e in range(cfg['n_expert']):
            t, slot = np.nonzero(e_ids == e)
            if len(t) == 0:
                continue
            he = h[t]
            ye = (silu(he @ G[e].T) * (he @ U[e].T)) @ D[e].T
            np.add.at(y, t, ye * e_w[t, slot][:, None])
        x = x + y
    x = rmsnorm(x, W['output_norm.weight'], eps)
    return x @ W['output.weight'].T, routes


def tokens():
    from tokenizers import Tokenizer
    tk = Tokenizer.from_file(os.path.join(FIX, 'tokenizer.json'))
    text = open(os.path.join(FIX, 'persuasion.txt'), encoding='utf-8').read()
    ids = tk.encode(text, add_special_tokens=False).ids
    return [0] + ids          # BOS = 0 first


def chunk(all_ids, j):
    c = list(all_ids[j * CTX:(j + 1) * CTX])
    c[0] = 0
    return c


def main():
    args = sys.argv[1:]
    W, cfg = load(os.path.join(FIX, 'tiny-moe-f16.gguf'))
    if '--check' in args:
        ids = json.load(open(os.path.join(FIX, 'ref-prompt-tokens.json')))
        ref = np.fromfile(os.path.join(FIX, 'ref-logits-llamacpp.f32'), dtype='<f4').reshape(len(ids), -1)
        logits, _ = forward(W, cfg, ids)
        d = np.abs(logits - ref).max()
        same = int((logits.argmax(1) == ref.argmax(1)).sum())
        print(f'check: max |delta| {d:.5f} vs llama.cpp, max |logit| {np.abs(ref).max():.3f}, '
              f'same argmax {same}/{len(ids)}', file=sys.stderr)
        assert d < 1e-2 * np.abs(ref).max() and same == len(ids)
    all_ids = tokens() if ('--stats' in args or '--out' in args) else None
    if '--stats' in args:
        n = int(args[args.index('--stats') + 1])
        ref = json.load(open(os.path.join(FIX, 'routing.json')))['layers']
        hist = {l: np.zeros(cfg['n_expert'], np.int64) for l in ref}
        reuse = {l: [0, 0, 0] for l in ref}     # pairs, pairs sharing >= 1, total overlap
        for j in range(n):
            _, routes = forward(W, cfg, chunk(all_ids, j))
            for l in ref:
                e = routes[int(l)][0][1:]        # position 0 (BOS) excluded
                np.add.at(hist[l], e.reshape(-1), 1)
                ov = np.array([len(set(a) & set(b)) for a, b in zip(e[:-1], e[1:])])
                reuse[l][0] += len(ov)
                reuse[l][1] += int((ov >= 1).sum())
                reuse[l][2] += int(ov.sum())
            if j % 32 == 31:
                print(f'{j + 1} chunks', file=sys.stderr)
        for l in ref:
            r = ref[l]
            rh = np.array(r['expert_load_hist'])
            print(f'layer {l}: load |hist - routing.json| max {np.abs(hist[l] * (rh.sum() / hist[l].sum()) - rh).max():.1f}'
                  f' (sum {hist[l].sum()} vs {rh.sum()}); reuse {reuse[l][1] / reuse[l][0]:.4f} vs '
                  f'{r["consecutive_reuse_ge1"]:.4f}; mean overlap {reuse[l][2] / reuse[l][0]:.4f} vs '
                  f'{r["consecutive_mean_overlap"]:.4f}', file=sys.stderr)
    if '--out' in args:
        out = args[args.index('--out') + 1]
        js = [int(s) for s in args[args.index('--chunks') + 1].split(',')]
        data = {'description': 'Written by scripts/gen_moe_routes.py (numpy float64 reference of '
                'tiny-moe-f16.gguf, checked against llama.cpp logits). Chunks of persuasion.txt under '
                'the llama-perplexity protocol (-c 256): chunk j = tokens [256j, 256j+256) of the file '
                'tokenized with BOS, first token replaced by BOS. For each chunk: tokens, and per MoE '
                'layer per position: experts (best biased score first), weights (normalized x2.5), '
                'margin = min(4th - 5th biased score among the kept groups, last kept - first dropped '
                'group score).', 'chunks': []}
        for j in js:
            ids = chunk(all_ids, j)
            _, routes = forward(W, cfg, ids)
            data['chunks'].append({'index': j, 'tokens': ids, 'layers': {
                str(l): {'experts': routes[l][0].tolist(),
                         'weights': [[round(float(v), 6) for v in row] for row in routes[l][1]],
                         'margin': [float(f'{v:.3g}') for v in routes[l][2]]}
                for l in sorted(routes)}})
            print(f'chunk {j}', file=sys.stderr)
        with open(out, 'w') as f:
            json.dump(data, f, separators=(',', ':'))
        print('wrote', out, os.path.getsize(out), 'bytes', file=sys.stderr)


if __name__ == '__main__':
    main()
