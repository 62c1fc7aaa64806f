#!/usr/bin/env python3
"""Reference logits for SmolLM2-135M-Instruct from the float64 numpy oracle.

Runs ../shared/oracles/llama_ref.py (an independent exact forward pass, outside
lowbit; see ../shared/oracles/README.md) with `--rope normal` on the first 32
token ids of austen.txt and writes tests/data/smollm2_llama_ref.bin.

Prompt: the first N_TOKENS ids of the last entry of tests/data/smollm2_tokens.json
(austen.txt[:20000] tokenized by llama.cpp with add_special=True, the same ids
lowbit's tokenizer test checks), so no tokenizer is needed here.

Layout of tests/data/smollm2_llama_ref.bin, all little-endian, no padding:

    offset 0   : 4 bytes  magic b"LREF"
    offset 4   : u32      n_tokens  (32)
    offset 8   : u32      n_vocab   (49152)
    offset 12  : u32      stride S  (16)
    offset 16  : n_tokens x u32  prompt token ids
    then, for each position p in 0..n_tokens (the logits after tokens[..=p]),
    a record of 8 + 4*(n_vocab/S) + 8*TOP_K bytes:
        u32   argmax over the full row of n_vocab logits (first index on ties)
        f32   max |logit| over the full row
        n_vocab/S x f32   logits[0], logits[S], logits[2S], ... logits[n_vocab-S]
        TOP_K x (u32 index, f32 value)   the TOP_K (16) largest logits of the row,
                                         sorted by value descending
                                         (ties: lower index first)

n_vocab is a multiple of S. With the numbers above the file is
16 + 128 + 32 * (8 + 12288 + 128) = 397712 bytes.
The oracle's logits are float64 internally; its output (and this file) is f32.

Usage: pip install numpy gguf
       ./scripts/fetch_smollm2.sh && python3 scripts/gen_llama_reference.py
"""
import json
import os
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
ORACLE = os.path.join(ROOT, "..", "shared", "oracles", "llama_ref.py")
TOKENS = os.path.join(ROOT, "tests", "data", "smollm2_tokens.json")
OUT = os.path.join(ROOT, "tests", "data", "smollm2_llama_ref.bin")

N_TOKENS = 32
STRIDE = 16
TOP_K = 16

with open(TOKENS, encoding="utf-8") as f:
    cases = json.load(f)
assert cases[-1]["text"].startswith("EMMA"), "last entry should be austen.txt[:20000]"
ids = cases[-1]["ids"][:N_TOKENS]
assert len(ids) == N_TOKENS

t0 = time.time()
with tempfile.TemporaryDirectory() as tmp:
    ids_csv = os.path.join(tmp, "ids.csv")
    out_f32 = os.path.join(tmp, "logits.f32")
    with open(ids_csv, "w") as f:
        f.write(",".join(str(i) for i in ids))
    subprocess.run([sys.executable, ORACLE, MODEL, ids_csv, out_f32, "--rope", "normal"], check=True)
    raw = np.fromfile(out_f32, dtype="<f4")
elapsed = time.time() - t0

assert raw.size % N_TOKENS == 0
n_vocab = raw.size // N_TOKENS
assert n_vocab % STRIDE == 0
logits = raw.reshape(N_TOKENS, n_vocab)
assert np.isfinite(logits).all()

buf = bytearray(b"LREF")
buf += struct.pack("<III", N_TOKENS, n_vocab, STRIDE)
buf += struct.pack(f"<{N_TOKENS}I", *ids)
argmaxes = []
for row in logits:
    am = int(np.argmax(row))
    argmaxes.append(am)
    buf += struct.pack("<If", am, float(np.max(np.abs(row))))
    buf += row[::STRIDE].astype("<f4").tobytes()
    top = np.lexsort((np.arange(n_vocab), -row.astype(np.float64)))[:TOP_K]
    for i in top:
        buf += struct.pack("<If", int(i), float(row[i]))
with open(OUT, "wb") as f:
    f.write(buf)

# Sanity: mean next-token NLL over the N_TOKENS-1 predictable positions.
x = logits[:-1].astype(np.float64)
m = x.max(axis=1, keepdims=True)
lse = (m[:, 0] + np.log(np.exp(x - m).sum(axis=1)))
nll = lse - x[np.arange(N_TOKENS - 1), ids[1:]]
hits = sum(a == t for a, t in zip(argmaxes[:-1], ids[1:]))

print(f"wrote {OUT} ({len(buf)} bytes), n_tokens={N_TOKENS} n_vocab={n_vocab} stride={STRIDE}")
print(f"oracle time {elapsed:.1f} s")
print(f"max |logit| overall {np.abs(logits).max():.4f}, argmax of last position {argmaxes[-1]}")
print(f"mean next-token NLL over {N_TOKENS - 1} positions {nll.mean():.4f} "
      f"(uniform {np.log(n_vocab):.2f}); argmax == next token at {hits}/{N_TOKENS - 1}")
print("argmax per position:", argmaxes)
