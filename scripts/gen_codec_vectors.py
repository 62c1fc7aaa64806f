#!/usr/bin/env python3
"""Generate the codec test vectors under tests/data/codecs/ from independent oracles.

Oracles (both from PyPI, neither uses lowbit):
  * `gguf` (gguf-py): numpy quantizers/dequantizers in `gguf.quants`.
  * `ggml-python`: Python bindings over ggml's own C code (`ggml_quantize_chunk`,
    the type traits' `to_float`). It supplies what gguf-py lacks: the K-quant
    reference quantizers, the imatrix-weighted quantizers and the IQ lattice search.

Every file is little-endian. Per type T (ROWS rows of N elements each):
  T.x.f32        input floats
  T.ref.bin      ggml quantization without importance weights (the *_ref path)
  T.ref.f32      gguf.quants dequantization of T.ref.bin
  T.imat.bin     ggml quantization with the importance weights in weights.f32
                 (one weight per column, shared by every row, as ggml applies an imatrix)
  T.rand.bin     random blocks (scale fields forced finite)
  T.rand.f32     gguf.quants dequantization of T.rand.bin
  iq_errors.txt  ggml's round-trip RMSE of the IQ formats on two weight sets

The script also asserts that gguf.quants and ggml agree with each other, bit for bit,
wherever both implement an operation, so the two oracles check each other.

Usage: pip install gguf numpy ggml-python==0.0.45 && python3 scripts/gen_codec_vectors.py
"""
import ctypes
import os
import sys

import ggml
import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import GGUFReader
import gguf.quants as gq

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "data", "codecs")
FIXTURES = os.path.join(ROOT, "..", "shared", "fixtures")
ROWS, N = 4, 512

# f16 scale fields per block (byte offsets), so random blocks stay finite.
SCALE_FIELDS = {
    "Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0],
    "Q2_K": [80, 82], "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208],
    "IQ2_XXS": [0], "IQ1_S": [0], "IQ1_M": [], "TQ1_0": [52], "TQ2_0": [64], "IQ4_NL": [0],
}
REF_TYPES = ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1",
             "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "TQ1_0", "TQ2_0"]
IQ_TYPES = ["IQ2_XXS", "IQ1_S", "IQ1_M"]
# Reference-quantized like REF_TYPES, but generated last (gguf-py has no quantizer for it).
LATE_TYPES = ["IQ4_NL"]

rng = np.random.default_rng(20261128)


def fptr(a):
    return a.ctypes.data_as(ctypes.POINTER(ctypes.c_float))


def ggml_type(name):
    return getattr(ggml, "GGML_TYPE_" + name)


def ggml_quantize(name, x, weights=None):
    rows, n = x.shape
    t = ggml_type(name)
    traits = ggml.ggml_get_type_traits(t).contents
    out = np.zeros(rows * n // traits.blck_size * traits.type_size, dtype=np.uint8)
    ggml.ggml_quantize_init(t)
    x = np.ascontiguousarray(x, dtype=np.float32)
    w = None if weights is None else fptr(np.ascontiguousarray(weights, dtype=np.float32))
    size = ggml.ggml_quantize_chunk(t, fptr(x), out.ctypes.data_as(ctypes.c_void_p), 0, rows, n, w)
    assert size == out.size, (name, size, out.size)
    return out


def ggml_dequantize(name, data, count):
    if name == "F32":  # ggml has no to_float for F32: it is the identity
        return data.view(np.float32)[:count].copy()
    traits = ggml.ggml_get_type_traits(ggml_type(name)).contents
    y = np.zeros(count, dtype=np.float32)
    traits.to_float(data.ctypes.data_as(ctypes.c_void_p), fptr(y), count)
    return y


def gguf_dequantize(name, data, count):
    return gq.dequantize(data.reshape(-1), T[name]).reshape(-1)[:count].astype(np.float32)


def same_bits(a, b):
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


def inputs():
    x = np.zeros((ROWS, N), dtype=np.float32)
    x[0] = rng.standard_normal(N)
    x[1] = rng.standard_normal(N) * 0.02
    x[1, rng.integers(0, N, 12)] *= 40.0  # outliers
    x[1, 100:110] = 0.0
    x[2] = rng.uniform(-1e-3, 1e-3, N)
    x[2, 256:288] = 0.0  # one all-zero 32-block
    x[3] = 0.1 + 2 * np.cos(np.arange(N) + 0.5)
    return x


def float_inputs():
    x = inputs()
    x[3, :8] = [0.0, -0.0, 65504.0, 1e-8, -1e-8, 3.0e38, 1.0 / 3.0, 5.96e-8]
    return x


def random_blocks(name):
    traits = ggml.ggml_get_type_traits(ggml_type(name)).contents
    nblocks = ROWS * N // traits.blck_size
    data = rng.integers(0, 256, nblocks * traits.type_size, dtype=np.uint8)
    blocks = data.reshape(nblocks, traits.type_size)
    for off in SCALE_FIELDS[name]:
        scale = (rng.standard_normal(nblocks) * 0.01).astype(np.float16)
        blocks[:, off:off + 2] = scale.view(np.uint8).reshape(nblocks, 2)
    if name == "IQ1_M":
        # the f16 super-block scale lives in the top nibble of the four u16 scale words
        scale = (np.abs(rng.standard_normal(nblocks)) * 0.01).astype(np.float16).view(np.uint16)
        words = blocks[:, 48:56].copy().view(np.uint16)
        for k in range(4):
            words[:, k] = (words[:, k] & 0x0FFF) | (((scale >> (4 * k)) & 0xF) << 12)
        blocks[:, 48:56] = words.view(np.uint8)
    return blocks.reshape(-1)


def save(name, arr):
    arr.tofile(os.path.join(OUT, name))


def rmse(a, b):
    return float(np.sqrt(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


def iq_weight_sets():
    """A fixed random set and a real one: expert 0 of the fixture's blk.1.ffn_up_exps,
    with llama.cpp's imatrix for that expert as importance."""
    rand_x = rng.standard_normal((32, 512)).astype(np.float32)
    rand_w = rng.uniform(0.1, 2.0, 512).astype(np.float32)
    model = GGUFReader(os.path.join(FIXTURES, "tiny-moe-f16.gguf"))
    up = next(t for t in model.tensors if t.name == "blk.1.ffn_up_exps.weight")
    real_x = np.asarray(up.data[0], dtype=np.float32)  # [rows=256, cols=256]
    imat = GGUFReader(os.path.join(FIXTURES, "imatrix.gguf"))
    tensors = {t.name: t for t in imat.tensors}
    sum2 = np.asarray(tensors["blk.1.ffn_up_exps.weight.in_sum2"].data[0], dtype=np.float32)
    count = float(np.asarray(tensors["blk.1.ffn_up_exps.weight.counts"].data).reshape(-1)[0])
    real_w = (sum2 / count).astype(np.float32)
    return {"random": (rand_x, rand_w), "real": (real_x, real_w)}


def main():
    os.makedirs(OUT, exist_ok=True)
    weights = rng.uniform(0.05, 3.0, N).astype(np.float32)
    save("weights.f32", weights)
    count = ROWS * N
    for name in REF_TYPES + IQ_TYPES + LATE_TYPES:
        x = float_inputs() if name in ("F32", "F16", "BF16") else inputs()
        save(f"{name}.x.f32", x)
        if name in REF_TYPES + LATE_TYPES:
            ref = ggml_quantize(name, x)
            if name in ("F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "TQ1_0", "TQ2_0"):
                other = gq.quantize(x, T[name]).reshape(-1).view(np.uint8)
                assert np.array_equal(ref, other), f"{name}: ggml and gguf-py quantizers disagree"
            save(f"{name}.ref.bin", ref)
            deq = gguf_dequantize(name, ref, count)
            assert same_bits(deq, ggml_dequantize(name, ref, count)), f"{name}: dequantizers disagree"
            save(f"{name}.ref.f32", deq)
        if name not in ("F32", "F16", "BF16"):
            save(f"{name}.imat.bin", ggml_quantize(name, x, weights))
        if name in SCALE_FIELDS:
            blocks = random_blocks(name)
            deq = gguf_dequantize(name, blocks, count)
            assert same_bits(deq, ggml_dequantize(name, blocks, count)), f"{name}: dequantizers disagree"
            save(f"{name}.rand.bin", blocks)
            save(f"{name}.rand.f32", deq)
        print("wrote", name)

    sets = iq_weight_sets()
    with open(os.path.join(OUT, "iq_errors.txt"), "w") as f:
        f.write("# type set rows cols ggml_rmse (round trip with importance weights)\n")
        for set_name, (x, w) in sets.items():
            save(f"iq_{set_name}.x.f32", x)
            save(f"iq_{set_name}.w.f32", w)
            for name in IQ_TYPES:
                q = ggml_quantize(name, x, w)
                err = rmse(x.reshape(-1), gguf_dequantize(name, q, x.size))
                f.write(f"{name} {set_name} {x.shape[0]} {x.shape[1]} {err:.9g}\n")
                print(name, set_name, "ggml rmse", err)
    return 0


if __name__ == "__main__":
    sys.exit(main())
