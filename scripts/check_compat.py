#!/usr/bin/env python3
"""Check that a GGUF written by `lowbit quantize` is what other tools expect.

1. gguf-py (PyPI `gguf`) parses it: the tensor table equals `lowbit inspect --json`, and
   every tensor dequantizes (numpy dequantizers) to finite values that equal
   `lowbit dequant` for a sample of tensors.
2. If llama-cpp-python is installed: llama.cpp loads the file, and its logits for TOKENS
   match `lowbit logits` on the same file (max |diff| relative to max |logit|, argmax).

usage: scripts/check_compat.py FILE [TOKENS_JSON] [--lowbit target/release/lowbit]
"""
import argparse, json, math, os, subprocess, sys, tempfile

import numpy as np
import gguf

ap = argparse.ArgumentParser()
ap.add_argument("file")
ap.add_argument("tokens", nargs="?")
ap.add_argument("--lowbit", default="target/release/lowbit")
a = ap.parse_args()

reader = gguf.GGUFReader(a.file)
ours = json.loads(subprocess.check_output([a.lowbit, "inspect", "--json", a.file]))
theirs = {t.name: (t.tensor_type.name, [int(d) for d in t.shape]) for t in reader.tensors}
mine = {t["name"]: (t["type"].upper(), t["shape"]) for t in ours["tensors"]}
assert theirs.keys() == mine.keys(), "tensor names differ"
for name, (ty, shape) in mine.items():
    assert theirs[name][0] == ty, f"{name}: gguf-py says {theirs[name][0]}, lowbit {ty}"
    assert theirs[name][1] == shape, f"{name}: shapes {theirs[name][1]} vs {shape}"
print(f"gguf-py: {len(theirs)} tensors, names/types/shapes equal lowbit's")

with tempfile.TemporaryDirectory() as d:
    checked = 0
    for i, t in enumerate(reader.tensors):
        values = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32).ravel()
        assert np.isfinite(values).all(), f"{t.name}: non-finite values"
        if i % 7 == 0:
            out = os.path.join(d, "t.f32")
            subprocess.check_call([a.lowbit, "dequant", a.file, t.name, "-o", out], stderr=subprocess.DEVNULL)
            assert np.array_equal(np.fromfile(out, dtype=np.float32), values), f"{t.name}: dequant differs"
            checked += 1
print(f"gguf-py: every tensor dequantizes; {checked} compared bit for bit with lowbit dequant")

try:
    import llama_cpp
except ImportError:
    print("llama-cpp-python not installed: llama.cpp check skipped")
    sys.exit(0)
tokens = json.load(open(a.tokens)) if a.tokens else [0] + list(range(100, 163))
llm = llama_cpp.Llama(model_path=a.file, n_ctx=max(64, len(tokens)), logits_all=True, verbose=False, n_threads=2)
llm.eval(tokens)
ref = np.array(llm.scores[: len(tokens)], dtype=np.float32)
with tempfile.TemporaryDirectory() as d:
    out = os.path.join(d, "l.f32")
    subprocess.check_call([a.lowbit, "logits", "-m", a.file, "--backend", "cpu", "--tokens", ",".join(map(str, tokens)), "-o", out], stderr=subprocess.DEVNULL)
    got = np.fromfile(out, dtype=np.float32).reshape(len(tokens), -1)
diff = np.abs(got - ref).max()
scale = np.abs(ref).max()
agree = (got.argmax(1) == ref.argmax(1)).mean()
print(f"llama.cpp {llama_cpp.__version__} loads it; logits vs lowbit: max |diff| {diff:.4f} "
      f"({diff / scale:.2e} of max |logit| {scale:.2f}), same argmax at {100 * agree:.1f}% of {len(tokens)} positions")
