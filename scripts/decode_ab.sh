#!/usr/bin/env bash
# Same-minute decode comparison of lowbit builds on the GPU backend (this VM's speed
# swings by up to 2x between minutes, so builds are alternated within each round, and
# the copy kernel's rate is measured at the start of each round for the bandwidth bound).
# Usage: scripts/decode_ab.sh MODEL ROUNDS LOWBIT_BINARY...
set -euo pipefail
model=$1
rounds=$2
shift 2
prompt="Once upon a time, in a small village by the sea,"
for round in $(seq "$rounds"); do
    echo "round $round: $("$1" bench kernels --formats Q4_1 --shapes 64x64 --matmul-cols 0 2>&1 | grep 'copy kernel')"
    for bin in "$@"; do
        # Builds from before --ignore-eos decode the same 64 tokens greedily without it.
        extra=()
        if "$bin" generate --help | grep -q -- --ignore-eos; then extra=(--ignore-eos); fi
        echo "  $bin: $("$bin" generate -m "$model" -p "$prompt" -n 64 --temp 0 --stats --backend gpu "${extra[@]}" 2>&1 | grep decode)"
    done
done
