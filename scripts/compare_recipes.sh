#!/usr/bin/env bash
# Quantize MODEL several ways and compare each against MODEL itself on TEXT:
# size, bits per weight, perplexity, mean KL divergence and top-1 agreement, as a
# Markdown table (the tables in BENCHMARKS.md come from this script).
#
# usage: scripts/compare_recipes.sh MODEL TEXT CHUNKS IMATRIX CALIBRATION_TEXT VARIANT...
#   VARIANT: a preset (ud-iq1_s, uniform-iq1_s, ...), size:BYTES (--target-size),
#            bpw:X (--target-bpw), or file:PATH (an existing GGUF, e.g. llama.cpp's).
# Environment: LOWBIT (binary, default target/release/lowbit), BACKEND (cpu), CTX (256),
#              OUT (work directory, default a temporary one).
set -euo pipefail
model=$1 text=$2 chunks=$3 imatrix=$4 calib=$5
shift 5
lowbit=${LOWBIT:-target/release/lowbit}
backend=${BACKEND:-cpu}
ctx=${CTX:-256}
out=${OUT:-$(mktemp -d)}
mkdir -p "$out"
base="$out/base.kl"
if [ ! -f "$base" ]; then
  "$lowbit" perplexity -m "$model" -f "$text" -c "$ctx" --chunks "$chunks" --backend "$backend" --save-logits "$base" > "$out/base.txt" 2>&1
fi
echo "| variant | bytes | bpw | PPL | mean KLD | same top |"
echo "|---|---|---|---|---|---|"
row() {
  local name=$1 file=$2
  local log="$out/ppl-${name//[:\/]/_}.txt"
  "$lowbit" perplexity -m "$file" -f "$text" -c "$ctx" --chunks "$chunks" --backend "$backend" --kld-base "$base" > "$log" 2>&1
  local bytes weights ppl kld top
  bytes=$(stat -c %s "$file")
  weights=$("$lowbit" inspect --json "$file" | python3 -c 'import json,sys; import math; print(sum(math.prod(t["shape"]) for t in json.load(sys.stdin)["tensors"]))' 2>/dev/null || echo 0)
  ppl=$(grep '^PPL' "$log" | awk '{print $3}')
  kld=$(grep '^mean KLD' "$log" | awk '{print $4}')
  top=$(grep '^same top' "$log" | awk '{print $4}')
  local bpw="?"
  [ "$weights" != 0 ] && bpw=$(python3 -c "print(f'{$bytes*8/$weights:.3f}')")
  echo "| $name | $bytes | $bpw | $ppl | $kld | $top |"
}
row "base ($(basename "$model"))" "$model"
for v in "$@"; do
  case $v in
    file:*) row "$(basename "${v#file:}")" "${v#file:}"; continue ;;
    size:*) args=(--target-size "${v#size:}" --calibrate "$calib") ;;
    bpw:*) args=(--target-bpw "${v#bpw:}" --calibrate "$calib") ;;
    *) args=(--recipe "$v") ;;
  esac
  q="$out/${v//[:\/]/_}.gguf"
  if "$lowbit" quantize "$model" "$q" "${args[@]}" --imatrix "$imatrix" \
    --write-recipe "$q.recipe" --report "$q.svg" > "$q.plan" 2> "$q.log"; then
    row "$v" "$q"
  else
    echo "| $v | $(tail -1 "$q.log") | | | | |"
  fi
done
