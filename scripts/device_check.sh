#!/usr/bin/env bash
# The measurement for a lent GPU machine (../.library/device: 15 minutes of device time
# in all, at most 10 a command, no network there, 64 MiB carried, 8 files back). One
# prepared run of at most 6 minutes, so that it can run twice.
#
# Prepare here (builds, strips and copies what travels into device/, git-ignored):
#   scripts/device_check.sh --prepare
# Run on the device, carrying `device` (and `.gl` if the machine lacks the Vulkan loader,
# see the device README):
#   scripts/device_check.sh device
# Smoke run on lavapipe (no adapter check, a reduced sweep, the kernel tests filtered):
#   scripts/device_check.sh --lavapipe device
#
# It writes into $OUT (or ./device-out):
#   adapter.txt  the adapter, driver, subgroup sizes, features, limits, kernel table;
#                the run stops here unless it is a real GPU
#   tests.txt    the GPU kernel tests (a prebuilt test binary: every format and kernel
#                variant against the CPU reference, on this device's shader compiler)
#   matvec.csv   baselines (copy, read-only) and a matvec sweep: SmolLM2's shapes, R1's
#                routed experts and attention, a 4096 x 14336 layer; Q4_1, Q8_0, Q4_K,
#                Q2_K, IQ1_S, TQ2_0; 1, 4 and 8 columns; every variant (lanes, split with
#                the family's rows, split with 1, 2, 4 and 8 rows, split with the IQ
#                lattice in storage, lanes with it in workgroup memory); routed experts
#                (matvec_id, 8 per token, each shape as one expert) for 1, 4 and 8
#                tokens; GPU-timed, weights rotated over 256 MiB
#   matmul.csv   matmul at 512 and 2048 columns, padded and swizzled tiles
#   decode.txt   greedy decode of the MoE fixture (routed experts through matvec_id)
#                with the adapter's table and with each layout forced, --stats; and on
#                the fast CPU backend with the host's physical cores and with 2 threads
#   log.txt      everything printed
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)

if [ "${1:-}" = "--prepare" ]; then
    cd "$here"
    cargo build --release --bin lowbit
    test_bin=$(cargo test --release --test gpu_kernels --no-run 2>&1 | sed -n 's/.*Executable .*(\(.*\))$/\1/p')
    mkdir -p device
    strip -o device/lowbit target/release/lowbit
    strip -o device/gpu_kernels "$test_bin"
    cp ../shared/fixtures/tiny-moe-Q2_K.gguf device/model.gguf
    du -sh device
    exit 0
fi

lavapipe=0
if [ "${1:-}" = "--lavapipe" ]; then
    lavapipe=1
    shift
fi
dir=${1:?usage: scripts/device_check.sh [--prepare | [--lavapipe] DIR]}
out=${OUT:-$here/device-out}
mkdir -p "$out"
exec > >(tee "$out/log.txt") 2>&1
bin="$dir/lowbit"
start=$(date +%s)
step() { echo; echo "== $* ($(( $(date +%s) - start )) s)"; }

step adapter
if [ $lavapipe = 1 ]; then
    "$bin" bench adapter | tee "$out/adapter.txt"
else
    "$bin" bench adapter --require-gpu | tee "$out/adapter.txt"
fi

step "GPU kernel tests"
if [ $lavapipe = 1 ]; then
    # The whole binary takes ~4 minutes on lavapipe, which `cargo test` runs anyway.
    "$dir/gpu_kernels" --test-threads 2 baseline kernel_benchmarks bad_shapes host 2>&1 | tee "$out/tests.txt"
else
    "$dir/gpu_kernels" --test-threads 8 2>&1 | tee "$out/tests.txt"
fi

if [ $lavapipe = 1 ]; then
    shapes=1536x576
    formats=Q4_1,IQ1_S
    cols=1
    iters=1
    variants="lanes:: split:: split::storage"
    matmul_cols=64
    n_decode=32
else
    # SmolLM2: gate/up, down, the head; R1: experts (gate/up, down), attention
    # (q_a, q_b, kv_a, o); a 4096 x 14336 FFN layer.
    shapes=576x1536,1536x576,576x49152,7168x2048,2048x7168,7168x1536,1536x24576,7168x576,16384x7168,4096x14336
    formats=Q4_1,Q8_0,Q4_K,Q2_K,IQ1_S,TQ2_0
    cols=1,4,8
    iters=3
    variants="lanes:: split:: split:1: split:2: split:4: split:8: split::storage lanes::shared"
    matmul_cols=512,2048
    n_decode=128
fi

step "matvec sweep"
first=1
for v in $variants; do
    IFS=: read -r layout rows lattice <<< "$v"
    echo "-- LOWBIT_MATVEC=$layout LOWBIT_MATVEC_ROWS=${rows:-(table)} LOWBIT_LATTICE=${lattice:-(table)}"
    LOWBIT_MATVEC=$layout LOWBIT_MATVEC_ROWS=$rows LOWBIT_LATTICE=$lattice "$bin" bench kernels --shapes "$shapes" \
        --formats "$formats" --cols "$cols" --routed --matmul-cols 0 --iters "$iters" --csv "$out/part.csv"
    if [ $first = 1 ]; then
        cp "$out/part.csv" "$out/matvec.csv"
        first=0
    else
        tail -n +2 "$out/part.csv" >> "$out/matvec.csv"
    fi
done
rm -f "$out/part.csv"

step "matmul"
for tiles in padded swizzled; do
    echo "-- LOWBIT_MATMUL=$tiles"
    LOWBIT_MATMUL=$tiles "$bin" bench kernels --shapes "${shapes%%,*}" --formats "$formats" --cols 1 \
        --matmul-cols "$matmul_cols" --iters "$iters" --csv "$out/part.csv"
    if [ $tiles = padded ]; then cp "$out/part.csv" "$out/matmul.csv"; else tail -n +2 "$out/part.csv" >> "$out/matmul.csv"; fi
done
rm -f "$out/part.csv"

step decode
prompt="Once upon a time, in a small village by the sea,"
{
    for v in table lanes split; do
        echo "-- matvec layout: $v"
        if [ $v = table ]; then unset LOWBIT_MATVEC; else export LOWBIT_MATVEC=$v; fi
        "$bin" generate -m "$dir/model.gguf" -p "$prompt" -n "$n_decode" --temp 0 --stats --backend gpu --ignore-eos 2>&1 |
            grep -E "decode|prompt|memory" || true
    done
    # The fast CPU backend on the host's cores, beside the GPU (physical cores, then 2).
    unset LOWBIT_MATVEC
    for t in 0 2; do
        echo "-- fast CPU backend, -t $t"
        "$bin" generate -m "$dir/model.gguf" -p "$prompt" -n "$n_decode" --temp 0 --stats --backend cpu -t $t --ignore-eos 2>&1 |
            grep -E "backend|decode|prefill" || true
    done
} | tee "$out/decode.txt"
step done
