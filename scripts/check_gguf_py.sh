#!/usr/bin/env bash
# The interoperability check that follows `cargo test --release` in README's test
# command: a file lowbit quantizes with the ud-iq1_s preset is read back by gguf-py (PyPI
# `gguf`, installed if missing) and compared with lowbit's own reading; llama.cpp loads it
# too when llama-cpp-python is installed. Builds the release binary if cargo test has not.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release --quiet
python3 -c "import gguf, numpy" 2>/dev/null || python3 -m pip install --quiet gguf numpy
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
fixtures=../shared/fixtures
target/release/lowbit quantize "$fixtures/tiny-moe-f16.gguf" "$tmp/ud-iq1_s.gguf" --recipe ud-iq1_s \
  --imatrix "$fixtures/imatrix.gguf" > /dev/null 2> "$tmp/quantize.log"
python3 scripts/check_compat.py "$tmp/ud-iq1_s.gguf" "$fixtures/ref-prompt-tokens.json"
