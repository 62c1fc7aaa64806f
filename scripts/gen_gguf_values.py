#!/usr/bin/env python3
"""Write tests/data/gguf_values.gguf with gguf-py (PyPI `gguf`), an independent GGUF writer,
as the oracle of lowbit's GGUF reader and writer (tests/gguf.rs
`gguf_py_file_reads_exactly_and_lowbit_rewrites_it_byte_for_byte`).

The file holds one metadata key of every scalar GGUF value type (with edge values), arrays of
every element type (strings and a nested array of arrays included), and three tiny tensors:
F32, F16 and Q8_0 (quantized by gguf-py's numpy `gguf.quants.quantize`). gguf-py refuses
empty arrays (`add_array` skips them, `_pack_val` raises), so the empty-array case is covered
only by lowbit's own round trip.

The Rust test spells out the same values as literals; keep the two in step. Tensor values are
exact in f32: t(i) = ((i * 37) % 101 - 50) / 16.

usage: pip install gguf numpy && python3 scripts/gen_gguf_values.py [OUT]
"""
import sys

import numpy as np
import gguf
from gguf import GGUFValueType as T

out = sys.argv[1] if len(sys.argv) > 1 else "tests/data/gguf_values.gguf"


def values(n):
    i = np.arange(n, dtype=np.int64)
    return (((i * 37) % 101 - 50) / 16.0).astype(np.float32)


w = gguf.GGUFWriter(out, arch="testarch")  # writes general.architecture first
kv = w.add_key_value
kv("t.u8", 255, T.UINT8)
kv("t.i8", -128, T.INT8)
kv("t.u16", 65535, T.UINT16)
kv("t.i16", -32768, T.INT16)
kv("t.u32", 4294967295, T.UINT32)
kv("t.i32", -2147483648, T.INT32)
kv("t.u64", 18446744073709551615, T.UINT64)
kv("t.i64", -9223372036854775808, T.INT64)
kv("t.f32", -1e-40, T.FLOAT32)  # an f32 subnormal
kv("t.f32_inf", float("inf"), T.FLOAT32)
kv("t.f64", 2.0**-1074, T.FLOAT64)  # the smallest subnormal
kv("t.bool_true", True, T.BOOL)
kv("t.bool_false", False, T.BOOL)
kv("t.str", "héllo, wörld ✓", T.STRING)
kv("t.str_empty", "", T.STRING)
kv("t.arr_u8", [0, 1, 255], T.ARRAY, T.UINT8)
kv("t.arr_i8", [-128, 0, 127], T.ARRAY, T.INT8)
kv("t.arr_u16", [0, 65535], T.ARRAY, T.UINT16)
kv("t.arr_i16", [-32768, 32767], T.ARRAY, T.INT16)
kv("t.arr_u32", [1, 4294967295], T.ARRAY, T.UINT32)
kv("t.arr_i32", [-1, 2147483647], T.ARRAY, T.INT32)
kv("t.arr_u64", [0, 18446744073709551615], T.ARRAY, T.UINT64)
kv("t.arr_i64", [-9223372036854775808, 9223372036854775807], T.ARRAY, T.INT64)
kv("t.arr_f32", [0.5, -0.0, 3.25], T.ARRAY, T.FLOAT32)
kv("t.arr_f64", [0.1, -1e300], T.ARRAY, T.FLOAT64)
kv("t.arr_bool", [True, False, True], T.ARRAY, T.BOOL)
kv("t.arr_str", ["a", "", "ünï"], T.ARRAY, T.STRING)
kv("t.arr_nested", [[1, 2], [3]], T.ARRAY, T.ARRAY)  # inner arrays typed by gguf-py: INT32

w.add_tensor("t.f32", values(5))  # [5]
w.add_tensor("t.f16", values(2 * 8).reshape(2, 8).astype(np.float16))  # ne = [8, 2]
q = gguf.quants.quantize(values(3 * 64).reshape(3, 64), gguf.GGMLQuantizationType.Q8_0)
w.add_tensor("t.q8_0", q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)  # bytes [3, 68] -> ne = [64, 3]

w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
print(out)
