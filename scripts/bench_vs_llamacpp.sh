#!/usr/bin/env bash
# Side-by-side CPU speed of lowbit and llama.cpp on the same files and thread count, in
# the same state: lowbit prefills a prompt of P tokens (about 64; P is printed) and then
# decodes N (`lowbit generate -n N --ignore-eos`); llama-bench measures the prefill of P
# tokens (-p P -n 0) and the decode of N after P tokens in the cache (-p 0 -n N -d P).
# Both run warm:
# llama-bench makes a warm-up run before it times, and lowbit runs the prompt once
# untimed (`--warmup`), so that neither times the first touch of the mapped weights.
# Each round alternates the two programs on every file, because this VM's speed swings by 2x
# between minutes; each program's number is the mean of 3 runs (llama-bench -r 3, three
# lowbit runs), and the ratio is printed per round. Builds llama.cpp with
# scripts/build_llamacpp.sh (cached in .llamacpp/) and lowbit in release mode.
#
# Usage: scripts/bench_vs_llamacpp.sh [-r ROUNDS] [-t THREADS] [-n TOKENS] MODEL.gguf...
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
rounds=3
threads=2
n=64
while getopts "r:t:n:" opt; do
    case $opt in
        r) rounds=$OPTARG ;;
        t) threads=$OPTARG ;;
        n) n=$OPTARG ;;
        *) echo "usage: $0 [-r ROUNDS] [-t THREADS] [-n TOKENS] MODEL..." >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
[ $# -gt 0 ] || { echo "usage: $0 [-r ROUNDS] [-t THREADS] [-n TOKENS] MODEL..." >&2; exit 2; }

"$here/scripts/build_llamacpp.sh" >&2
bench=${LLAMACPP_DIR:-$here/.llamacpp}/build/bin/llama-bench
(cd "$here" && cargo build --release --quiet)
lowbit=$here/target/release/lowbit
# About 64 tokens of prose for both tokenizers (SmolLM2's and the fixture's).
prompt="It was a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife. However little known the feelings or views of such a man may be on his first entering a neighbourhood, this truth is so well fixed in the minds of the surrounding families"

# llama-bench's tokens per second for one test (`-p P -n G -d D`), from its CSV.
llama_ts() {
    "$bench" -m "$1" -p "$2" -n "$3" -d "$4" -t "$threads" -r 3 -o csv 2> /dev/null |
        python3 -c 'import csv,sys; r=list(csv.DictReader(sys.stdin)); print("%.1f" % float(r[-1]["avg_ts"]))'
}

echo "| model | round | prompt tokens | llama.cpp decode | lowbit decode | ratio | llama.cpp prefill | lowbit prefill | ratio |"
echo "|---|---|---|---|---|---|---|---|---|"
for round in $(seq "$rounds"); do
    for model in "$@"; do
        np=$("$lowbit" generate -m "$model" -p "$prompt" -n 1 --stats --backend cpu -t "$threads" 2>&1 > /dev/null |
            sed -n 's/^prefill: \([0-9]*\) tokens.*/\1/p')
        l_tg=$(llama_ts "$model" 0 "$n" "$np")
        l_pp=$(llama_ts "$model" "$np" 0 0)
        stats=$(for _ in 1 2 3; do
            "$lowbit" generate -m "$model" -p "$prompt" -n "$n" --temp 0 --ignore-eos --warmup --stats --backend cpu -t "$threads" 2>&1 > /dev/null
        done)
        mean() { sed -n "s/^$1: .*(\([0-9.]*\) tok\/s)/\1/p" <<< "$stats" | awk '{s += $1} END {printf "%.1f", s / NR}'; }
        b_tg=$(mean decode)
        b_pp=$(mean prefill)
        ratio() { python3 -c "print(f'{$1 / $2:.2f}x')"; }
        echo "| $(basename "$model") | $round | $np | $l_tg | $b_tg | $(ratio "$b_tg" "$l_tg") | $l_pp | $b_pp | $(ratio "$b_pp" "$l_pp") |"
    done
done
echo "threads: $threads; lowbit: $("$lowbit" generate -m "$1" -p x -n 1 --backend cpu -t "$threads" --stats 2>&1 > /dev/null | sed -n 's/^backend: //p')"
