#!/usr/bin/env python3
"""Check that a GGUF written by `lowbit quantize` is what other tools expect.

1. gguf-py (PyPI `gguf`) parses it: the tensor table equals `lowbit inspect --json`, and
   every tensor dequantizes (numpy dequantizers) to finite values that equal
   `lowbit dequant` for a sample of tensors.
2. If llama-cpp-python is installed: llama.cpp loads the file, and its logits for TOKENS
   match `lowbit logits` on the same file: max |diff| <= --max-rel of max |logit| and
   the same argmax at >= --min-agree of the positions, or the script fails. llama.cpp's
   CPU path multiplies by activations quantized to Q8_1/Q8_K, which moves its logits by
   up to 0.126 of max |logit| from the exact function on SmolLM2 Q4_1
   (../shared/oracles/README.md), hence the default bound of 0.2. With --require-llama
   a missing llama-cpp-python is a failure instead of a skip.

usage: scripts/check_compat.py FILE [TOKENS_JSON] [--lowbit target/release/lowbit]
                               [--max-rel 0.2] [--min-agree 0.9] [--require-llama]
"""
import argparse, json, math, os, subprocess, sys, tempfile

import numpy as np
import gguf

ap = argparse.ArgumentParser()
ap.add_argument("file")
ap.add_argument("tokens", nargs="?")
ap.add_argument("--lowbit", default="target/release/lowbit")
ap.add_argument("--max-rel", type=float, default=0.2)
ap.add_argument("--min-agree", type=float, default=0.9)
ap.add_argument("--require-llama", action="store_true")
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
    if a.require_llama:
        sys.exit("llama-cpp-python not installed, and --require-llama was given")
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
assert diff <= a.max_rel * scale, f"llama.cpp vs lowbit: max |diff| {diff:.4f} > {a.max_rel} x {scale:.2f}"
assert agree >= a.min_agree, f"llama.cpp vs lowbit: same argmax at {100 * agree:.1f}% < {100 * a.min_agree:.0f}%"
