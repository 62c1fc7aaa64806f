#!/usr/bin/env bash
# The decode-target measurement for a lent GPU machine (../.library/device: at most 15
# minutes of device time in all, no network there, 64 MiB carried). Prepare here:
#   cargo build --release && mkdir -p device && strip -o device/lowbit target/release/lowbit
#   cp ../shared/fixtures/tiny-moe-Q2_K.gguf device/model.gguf
# then run on the device, carrying `device`: scripts/device_check.sh device/lowbit device/model.gguf
# SmolLM2 does not fit the carry limit (98 MB; lowbit's smallest plan for it is 66 MB),
# so its decode on the device is estimated from the kernel rows at its shapes (576x3072
# gate/up, 1536x576 down, 576x960 Q/K/V, 576x576 output, 576x49152 head) plus the
# fixture's measured per-token overhead.
# It prints the adapter, the copy kernel's GB/s, product kernels at SmolLM2's shapes (and
# R1's routed experts') against it, with the uniform activation binding on and off, and a fixed-length
# greedy decode of the model with and without the per-operation profile.
set -euo pipefail
bin=$1
model=$2
prompt="Once upon a time, in a small village by the sea,"
"$bin" bench kernels --formats Q4_0,Q4_1,Q8_0 --shapes 576x3072,1536x576,576x960,576x576,576x49152 --matmul-cols 0
"$bin" bench kernels --formats Q2_K,Q4_K,TQ1_0,TQ2_0,IQ1_S,IQ1_M,IQ2_XXS --shapes 7168x2048,2048x7168 --matmul-cols 0
LOWBIT_NO_UNIFORM_X=1 "$bin" bench kernels --formats Q4_0,Q4_1 --shapes 576x3072,576x49152 --matmul-cols 0
for _ in 1 2; do
    "$bin" generate -m "$model" -p "$prompt" -n 128 --temp 0 --stats --backend gpu --ignore-eos
done
"$bin" generate -m "$model" -p "$prompt" -n 33 --temp 0 --backend gpu --ignore-eos --profile
