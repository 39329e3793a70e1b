# The two commands of the README's quick start: `make run` and `make test`.
# Both set everything up on a fresh machine; later runs reuse what is there.

PYTHON ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3.13 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export LLMTUI_TEST_MODELS ?= $(HOME)/.cache/llmtui-test-models
export CMAKE_BUILD_PARALLEL_LEVEL ?= 2

# llama-cpp-python compiles llama.cpp. We build its wheel once per machine into a cache
# keyed by version and build flags (pip's own wheel cache ignores CMAKE_ARGS). On x86-64
# the build is portable (AVX2/FMA/F16C) rather than -march=native: some virtual machines
# advertise AMX but crash in ggml's AMX kernels. Override LLAMA_CMAKE_ARGS for CUDA, e.g.
#   make setup LLAMA_CMAKE_ARGS="-DGGML_CUDA=on" LLAMA_FLAVOR=cuda
LLAMA_VERSION := 0.3.36
ARCH := $(shell uname -m)
ifeq ($(ARCH),x86_64)
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_RPC=ON
LLAMA_FLAVOR ?= avx2-rpc
else
LLAMA_CMAKE_ARGS ?= -DGGML_RPC=ON
LLAMA_FLAVOR ?= native-rpc
endif
WHEEL_DIR := $(HOME)/.cache/llmtui-wheels/llama-cpp-python-$(LLAMA_VERSION)-$(ARCH)-$(LLAMA_FLAVOR)
# tests/packaging installs the built llmtui wheel into a clean venv with this wheel.
export LLMTUI_LLAMA_WHEELS := $(WHEEL_DIR)
# llama.cpp's own tools (llama-server, llama-batched-bench) from the same vendored source,
# built once for the benchmarks (never by `make test`).
TOOLS_DIR := $(HOME)/.cache/llmtui-tools/llama.cpp-$(LLAMA_VERSION)-$(ARCH)-$(LLAMA_FLAVOR)
SYSPKGS := libportaudio2 espeak-ng sox tmux
# ruby: tests/packaging checks and runs the Homebrew formula's test block.
SYSPKGS += ruby
# iproute2 (ip, ss): tests/scale puts its RPC workers in network namespaces (root only).
SYSPKGS += iproute2
# The Rust SDK's crates as Debian packages: the build machines reach no crates registry,
# so cargo reads these from /usr/share/cargo/registry instead (see test-rust).
RUST_CRATE_PKGS := librust-reqwest-dev librust-tokio-dev librust-hyper-dev librust-serde-dev \
  librust-serde-derive-dev librust-serde-json-dev librust-futures-dev librust-bytes-dev \
  librust-thiserror-dev
DEBIAN_CRATES := /usr/share/cargo/registry
# Builds of the SDKs stay outside the repository and between runs: npm's cache (~/.npm)
# and one cargo target folder.
CARGO_TARGET_DIR ?= $(HOME)/.cache/llmtui-cargo/target

# `llm convert` (the convert extra) needs torch: the CPU build, installed on its own first
# so that pip never resolves a plain `torch` to the CUDA wheels.
TORCH_VERSION ?= 2.13.0

.PHONY: setup sysdeps models jsdeps run test lint bench bench-tools man clean test-js test-rust

setup: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "llmtui needs Python 3.11 or newer")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip wheel
	@if ! ls $(WHEEL_DIR)/llama_cpp_python-*.whl >/dev/null 2>&1; then \
	  echo "building llama-cpp-python $(LLAMA_VERSION) ($(LLAMA_FLAVOR)); this takes several minutes"; \
	  rm -rf $(WHEEL_DIR).tmp; CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/python -m pip wheel --quiet --no-deps \
	    --no-cache-dir --no-binary llama-cpp-python llama-cpp-python==$(LLAMA_VERSION) \
	    -w $(WHEEL_DIR).tmp && mv $(WHEEL_DIR).tmp $(WHEEL_DIR); fi
	$(BIN)/python -m pip install --quiet torch==$(TORCH_VERSION)
	$(BIN)/python -m pip install --quiet --find-links $(WHEEL_DIR) torch==$(TORCH_VERSION) \
	  llama-cpp-python==$(LLAMA_VERSION) -e '.[all,dev,convert,train,docs,scale]' ollama openai
	touch $@

# System packages the tests need (PortAudio for sounddevice, espeak-ng and sox to make
# speech, tmux for terminal tests, Node.js and npm for the JavaScript client tests).
# Installed with apt-get when running as root.
sysdeps:
	@missing=""; for p in $(SYSPKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	command -v node >/dev/null || missing="$$missing nodejs"; \
	command -v npm >/dev/null || missing="$$missing npm"; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing system packages:$$missing"; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	else echo "warning: missing system packages:$$missing (install them with your package manager)" >&2; fi
	@missing=""; for p in $(RUST_CRATE_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	command -v cargo >/dev/null || missing="$$missing cargo"; \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing the Rust SDK's crates:$$missing"; \
	  { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null \
	    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	         --no-install-recommends $$missing >/dev/null; }; } \
	  || echo "warning: could not install$$missing; cargo will need the crates registry" >&2; fi

# The real tiny test models, fetched once into a cache outside the repository.
models: $(STAMP)
	$(BIN)/python tests/fetch_models.py

# The official JavaScript clients (npm ollama and openai, pinned in tests/js/package.json),
# installed once into a cache outside the repository (~/.cache/llmtui-js, or $LLMTUI_JS_DEPS).
jsdeps: $(STAMP) sysdeps
	$(BIN)/python tests/js/deps.py

# Pull the default model and open the full-screen chat on it.
run: setup
	$(BIN)/llm pull smollm2:135m
	$(BIN)/llm chat smollm2:135m

lint: $(STAMP)
	$(BIN)/ruff check llmtui tests bench examples
	$(BIN)/mypy

test: setup sysdeps models jsdeps lint
	$(BIN)/python -m pytest -q
	$(MAKE) test-js test-rust

# The SDKs against a real daemon (tests/sdk_daemon.py starts `llm serve` for them).
test-js: setup models
	cd sdk/js && npm ci --no-audit --no-fund --prefer-offline && \
	  LLMTUI_PYTHON=$(CURDIR)/$(BIN)/python npm test

test-rust: setup models
	cd sdk/rust && export CARGO_TARGET_DIR=$(CARGO_TARGET_DIR) LLMTUI_PYTHON=$(CURDIR)/$(BIN)/python && \
	if ls -d $(DEBIAN_CRATES)/reqwest-0.11.* >/dev/null 2>&1; then \
	  cargo test --offline --config 'source.crates-io.replace-with="debian"' \
	    --config 'source.debian.directory="$(DEBIAN_CRATES)"'; \
	else cargo test; fi

bench-tools: $(STAMP)
	PYTHON=$(BIN)/python bench/build_tools.sh $(LLAMA_VERSION) $(TOOLS_DIR) "$(LLAMA_CMAKE_ARGS)"

bench: setup models bench-tools
	$(BIN)/python bench/run.py
	$(BIN)/python bench/engine.py --tools $(TOOLS_DIR)
	$(BIN)/python bench/speculative.py --tools $(TOOLS_DIR)

# The man page, from the command tree (a test says when it is out of date).
man: $(STAMP)
	$(BIN)/python -m llmtui.cli.manpage > man/llm.1

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
