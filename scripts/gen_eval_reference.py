#!/usr/bin/env python3
"""Reference numbers for lowbit's evaluation (src/eval.rs), computed with numpy in float64
outside lowbit, for tests/eval.rs.

Input: llama.cpp's logits of tiny-moe-f16 for the 64 tokens of ref-prompt-tokens.json
(shared/fixtures/ref-logits-llamacpp.f32, 64 x 4096 f32 LE). The logits of position p
predict token p+1. A slice of 16 positions (POSITIONS) is kept as three sets:

- base:  llama.cpp's logits as they are;
- noise: base + gaussian noise, std 0.5 (numpy default_rng(SEED)), rounded to f32;
- temp:  base / 0.8 (temperature 0.8), rounded to f32.

Written to tests/data/: eval_logits.f32 ([3 sets][16 positions][4096] f32 LE, in the order
above) and eval_reference.json: the next tokens and, per set, every position's NLL, the mean
NLL and the perplexity exp(mean NLL), and against the base: KL(base || set) per position
and its mean, and the share of positions whose argmax equals the base's. Everything is
computed in float64 from the stored f32 values, with log-softmax by log-sum-exp. Also
`cli_c64`: the perplexity `lowbit perplexity -c 64 --chunks 1` must report on a text that
starts where the prompt starts (tests/cli_model.rs), from llama.cpp's logits.

usage: pip install numpy && python3 scripts/gen_eval_reference.py [FIXTURES_DIR]
"""
import json, os, sys

import numpy as np

fixtures = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "../../shared/fixtures")
out_dir = os.path.join(os.path.dirname(__file__), "../tests/data")
N_VOCAB = 4096
POSITIONS = list(range(40, 56))
SEED = 20240611

tokens = json.load(open(os.path.join(fixtures, "ref-prompt-tokens.json")))
logits = np.fromfile(os.path.join(fixtures, "ref-logits-llamacpp.f32"), dtype="<f4").reshape(len(tokens), N_VOCAB)
base = logits[POSITIONS]
rng = np.random.default_rng(SEED)
sets = {
    "base": base,
    "noise": (base.astype(np.float64) + rng.normal(0.0, 0.5, base.shape)).astype(np.float32),
    "temp": (base.astype(np.float64) / 0.8).astype(np.float32),
}
next_tokens = [tokens[p + 1] for p in POSITIONS]


def log_softmax(x):
    x = x.astype(np.float64)
    m = x.max(axis=1, keepdims=True)
    return x - (m + np.log(np.exp(x - m).sum(axis=1, keepdims=True)))


lp_base = log_softmax(base)
reference = {
    "source": "ref-logits-llamacpp.f32 rows POSITIONS; see scripts/gen_eval_reference.py",
    "n_vocab": N_VOCAB,
    "positions": POSITIONS,
    "next_tokens": next_tokens,
    "sets": {},
}
for name, x in sets.items():
    lp = log_softmax(x)
    nll = -lp[np.arange(len(POSITIONS)), next_tokens]
    kld = (np.exp(lp_base) * (lp_base - lp)).sum(axis=1)
    same = (x.argmax(axis=1) == base.argmax(axis=1))
    reference["sets"][name] = {
        "nll": nll.tolist(),
        "mean_nll": float(nll.mean()),
        "ppl": float(np.exp(nll.mean())),
        "kld": kld.tolist(),
        "mean_kld": float(kld.mean()),
        "same_top": float(same.mean()),
    }
    print(f"{name:5}: ppl {np.exp(nll.mean()):.6f}  mean KLD {kld.mean():.6f}  same top {same.mean():.4f}")

# `lowbit perplexity -c 64 --chunks 1` on a text that starts "Sir Walter Elliot" (where the
# prompt starts): its one chunk is BOS + the first 63 tokens, the 64 tokens of the prompt, and
# positions 32..62 are scored (llama.cpp's protocol: the second half, predicting the next).
# Its perplexity from llama.cpp's logits is an outside value for the CLI on tiny-moe-f16.
lp_all = log_softmax(logits)
scored = range(32, 63)
cli_nll = np.array([-lp_all[p, tokens[p + 1]] for p in scored])
reference["cli_c64"] = {
    "text_starts_with": "Sir Walter Elliot",
    "tokens": tokens,
    "scored_positions": [scored.start, scored.stop],
    "ppl": float(np.exp(cli_nll.mean())),
}
print(f"cli -c 64 --chunks 1: ppl {np.exp(cli_nll.mean()):.6f} over {len(cli_nll)} positions")

np.stack([sets[k] for k in ("base", "noise", "temp")]).astype("<f4").tofile(os.path.join(out_dir, "eval_logits.f32"))
with open(os.path.join(out_dir, "eval_reference.json"), "w") as f:
    json.dump(reference, f, indent=1)
    f.write("\n")
