#!/usr/bin/env bash
# Build llama.cpp's CPU tools (llama-bench, llama-perplexity, llama-cli, llama-server)
# for side-by-side runs against lowbit on the same file and threads. The source is the
# llama.cpp that the PyPI source distribution of llama-cpp-python==0.3.36 vendors
# (model hubs and GitHub cannot be reached from these machines).
#
# Usage: scripts/build_llamacpp.sh            # -> .llamacpp/build/bin/ (git-ignored)
#        LLAMACPP_DIR=/some/cache scripts/build_llamacpp.sh
#
# GGML_NATIVE is off and the x86 features are set by hand from /proc/cpuinfo: a native
# build would also enable AMX where the host reports it, and AMX instructions fault in
# these VMs. A build takes 15-20 minutes on 2 cores; it is skipped when the binaries
# exist.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
dir=${LLAMACPP_DIR:-$here/.llamacpp}
version=0.3.36
tools=(llama-bench llama-perplexity llama-cli llama-server)

if [ -x "$dir/build/bin/llama-bench" ] && [ -x "$dir/build/bin/llama-server" ]; then
    echo "llama.cpp already built in $dir/build/bin"
    exit 0
fi
mkdir -p "$dir"
if [ ! -d "$dir/src" ]; then
    python3 -m pip download --no-deps --no-binary llama-cpp-python "llama-cpp-python==$version" -d "$dir/sdist"
    tar -xzf "$dir"/sdist/llama_cpp_python-$version.tar.gz -C "$dir"
    mv "$dir/llama_cpp_python-$version/vendor/llama.cpp" "$dir/src"
    rm -rf "$dir/llama_cpp_python-$version"
fi
command -v cmake > /dev/null || python3 -m pip install cmake

flags=$(grep -m1 '^flags' /proc/cpuinfo)
on() { if grep -qw "$1" <<< "$flags"; then echo ON; else echo OFF; fi; }
cmake -S "$dir/src" -B "$dir/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF \
    -DGGML_AVX=$(on avx) -DGGML_AVX2=$(on avx2) -DGGML_FMA=$(on fma) -DGGML_F16C=$(on f16c) \
    -DGGML_AVX512=$(on avx512f) -DGGML_AVX512_VNNI=$(on avx512_vnni) -DGGML_AVX_VNNI=$(on avx_vnni) \
    -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF \
    -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON
cmake --build "$dir/build" -j "$(nproc)" --target "${tools[@]}"
ls -la "$dir/build/bin"
