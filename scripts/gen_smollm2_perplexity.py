#!/usr/bin/env python3
"""Outside value for `lowbit perplexity -m SmolLM2 -f austen.txt[:6000] -c 64 --chunks 3`
(tests/cli_model.rs): the same protocol computed from shared/oracles/llama_ref.py, an exact
float64 numpy forward pass, on llama.cpp's token ids of austen.txt (tests/data/
smollm2_tokens.json, from llama-cpp-python; SmolLM2 adds no BOS, so chunks are the raw ids).

Each chunk of 64 runs from an empty cache; logits at positions 32..62 predict the next token
(llama-perplexity's second half). Writes tests/data/smollm2_perplexity.json.

usage: pip install numpy gguf && ./scripts/fetch_smollm2.sh && python3 scripts/gen_smollm2_perplexity.py
"""
import json, os, subprocess, sys, tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
ORACLE = os.path.join(ROOT, "..", "shared", "oracles", "llama_ref.py")
N_CTX, CHUNKS, N_VOCAB = 64, 3, 49152

cases = json.load(open(os.path.join(ROOT, "tests", "data", "smollm2_tokens.json")))
austen = next(c for c in cases if c["text"].startswith("EMMA"))
ids = austen["ids"]
ids = json.loads(ids) if isinstance(ids, str) else ids
assert len(ids) > N_CTX * CHUNKS + 10, "the test's 6000 characters hold well over 3 chunks"

nll = []
with tempfile.TemporaryDirectory() as d:
    for c in range(CHUNKS):
        chunk = ids[c * N_CTX:(c + 1) * N_CTX]
        csv, out = os.path.join(d, "ids.csv"), os.path.join(d, "l.f32")
        open(csv, "w").write(",".join(map(str, chunk)))
        subprocess.check_call([sys.executable, ORACLE, MODEL, csv, out], stdout=subprocess.DEVNULL)
        logits = np.fromfile(out, dtype="<f4").reshape(N_CTX, N_VOCAB).astype(np.float64)
        m = logits.max(axis=1, keepdims=True)
        lp = logits - (m + np.log(np.exp(logits - m).sum(axis=1, keepdims=True)))
        nll += [-lp[j, chunk[j + 1]] for j in range(N_CTX // 2, N_CTX - 1)]
nll = np.array(nll)
ppl = float(np.exp(nll.mean()))
print(f"SmolLM2 -c {N_CTX} --chunks {CHUNKS}: ppl {ppl:.6f} over {len(nll)} positions")
json.dump(
    {"text": "austen.txt[:6000]", "n_ctx": N_CTX, "chunks": CHUNKS, "scored": len(nll), "ppl": ppl},
    open(os.path.join(ROOT, "tests", "data", "smollm2_perplexity.json"), "w"),
    indent=1,
)
