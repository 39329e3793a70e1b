#!/usr/bin/env bash
# Build llama.cpp's own tools (llama-server, llama-batched-bench) from the llama.cpp that
# the pinned llama-cpp-python vendors, with the same CMake flags as the wheel, into a
# cache: the benchmarks compare llmtui against them on the same code and settings.
#   bench/build_tools.sh VERSION OUT_DIR "CMAKE ARGS"
# The source comes from the package index through pip's own configuration.
set -euo pipefail
version="$1"; out="$2"; cmake_args="${3:-}"
python="${PYTHON:-python3}"
if [ -x "$out/bin/llama-server" ] && [ -x "$out/bin/llama-batched-bench" ]; then
  exit 0
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "building llama.cpp tools from llama-cpp-python $version (several minutes, once)" >&2
"$python" -m pip download --quiet --no-deps --no-binary :all: \
  "llama-cpp-python==$version" -d "$work" >/dev/null
tar -xzf "$work"/llama_cpp_python-"$version".tar.gz -C "$work"
src="$work/llama_cpp_python-$version/vendor/llama.cpp"
# shellcheck disable=SC2086
cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=ON \
  -DLLAMA_BUILD_SERVER=ON -DBUILD_SHARED_LIBS=OFF $cmake_args >/dev/null
cmake --build "$work/build" --config Release -j "${CMAKE_BUILD_PARALLEL_LEVEL:-2}" \
  --target llama-server llama-batched-bench >/dev/null
mkdir -p "$out.tmp/bin"
cp "$work"/build/bin/llama-server "$work"/build/bin/llama-batched-bench "$out.tmp/bin/"
rm -rf "$out" && mv "$out.tmp" "$out"
echo "llama.cpp tools in $out/bin" >&2
