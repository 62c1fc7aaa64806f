#!/usr/bin/env python3
"""Hash gguf-py's dequantization of every tensor of every fixture model.

Writes tests/data/fixture_dequant.sha256, one line per tensor:
    FILE TENSOR TYPE N_ELEMENTS SHA256
where SHA256 is the digest of the tensor dequantized by `gguf.quants.dequantize`
as little-endian f32 in ggml element order (ne[0] fastest). tests/fixtures.rs
dequantizes the same tensors with lowbit and compares digests, so `cargo test`
checks bit-exactness on all llama.cpp-made files without Python.

Usage: pip install gguf numpy && ./scripts/fetch_smollm2.sh && python3 scripts/gen_fixture_hashes.py
"""
import hashlib
import os
import sys

import numpy as np
import gguf.quants as gq
from gguf import GGUFReader

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "..", "shared", "fixtures")
SMOLLM2 = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")


def main():
    files = sorted(f for f in os.listdir(FIXTURES) if f.startswith("tiny-moe-") and f.endswith(".gguf"))
    paths = [(f, os.path.join(FIXTURES, f)) for f in files]
    if os.path.exists(SMOLLM2):
        paths.append((os.path.basename(SMOLLM2), SMOLLM2))
    else:
        print("SmolLM2 not fetched; run scripts/fetch_smollm2.sh first", file=sys.stderr)
        return 1
    out = os.path.join(ROOT, "tests", "data", "fixture_dequant.sha256")
    with open(out, "w") as f:
        for name, path in paths:
            for t in GGUFReader(path).tensors:
                values = gq.dequantize(t.data, t.tensor_type).astype("<f4", copy=False)
                digest = hashlib.sha256(np.ascontiguousarray(values).tobytes()).hexdigest()
                f.write(f"{name} {t.name} {t.tensor_type.name} {values.size} {digest}\n")
            print("hashed", name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
