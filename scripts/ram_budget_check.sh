#!/usr/bin/env bash
# Decode a model on the CPU backend with and without --ram-budget, from a cold page
# cache, and compare: peak RSS (/usr/bin/time -v), tok/s, the streaming stats, and the
# logits (must be bit-identical). The disk's own sequential read rate is measured first,
# also cold. Needs root to drop the page cache (else it says so and runs warm).
#
#   scripts/ram_budget_check.sh MODEL BUDGET [TOKENS] [extra lowbit args...]
#   e.g. lowbit synth --layers 4 --dense-layers 1 -o r1-4l.gguf
#        scripts/ram_budget_check.sh r1-4l.gguf 4.38GiB 16
set -euo pipefail
model=$1 budget=$2 n=${3:-16}
shift $(( $# < 3 ? $# : 3 ))
bin=${LOWBIT:-target/release/lowbit}
out=$(mktemp -d)
drop() {
    sync
    if ! (echo 3 > /proc/sys/vm/drop_caches) 2>/dev/null; then
        echo "(cannot drop the page cache: not root; runs are warm)"
    fi
}
tokens=$(seq -s, 0 $((n - 1)))
drop
echo "== sequential read of $model (cold, dd bs=16M)"
dd if="$model" of=/dev/null bs=16M 2>&1 | tail -1
run() {
    local name=$1; shift
    drop
    echo "== $name"
    /usr/bin/time -v "$bin" logits -m "$model" --backend cpu --tokens "$tokens" --step 1 \
        -c "$n" --stats -o "$out/$name.f32" "$@" 2>"$out/$name.log" >/dev/null || { cat "$out/$name.log"; exit 1; }
    grep -E "^forward|^memory|expert streaming|^\| all|Maximum resident|Elapsed" "$out/$name.log"
}
run unbudgeted "$@"
run budgeted --ram-budget "$budget" "$@"
cmp "$out/unbudgeted.f32" "$out/budgeted.f32" && echo "logits: bit-identical"
rm -rf "$out"
