# The two commands of the README's quick start: `make run` and `make test`.
# Both set everything up on a fresh machine; later runs reuse what is there.

PYTHON ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3.13 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export LLMTUI_TEST_MODELS ?= $(HOME)/.cache/llmtui-test-models
# Build llama.cpp with both cores; pip caches the built wheel for the next set-up.
export CMAKE_BUILD_PARALLEL_LEVEL ?= 2
SYSPKGS := libportaudio2 espeak-ng sox tmux

.PHONY: setup sysdeps models run test lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "llmtui needs Python 3.11 or newer")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip wheel
	$(BIN)/python -m pip install --quiet -e '.[all,dev]' ollama openai
	touch $@

# System packages the tests need (PortAudio for sounddevice, espeak-ng and sox to make
# speech, tmux for terminal tests). Installed with apt-get when running as root.
sysdeps:
	@missing=""; for p in $(SYSPKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing system packages:$$missing"; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	else echo "warning: missing system packages:$$missing (install them with your package manager)" >&2; fi

# The real tiny test models, fetched once into a cache outside the repository.
models: $(STAMP)
	$(BIN)/python tests/fetch_models.py

run: setup
	$(BIN)/llm pull smollm2:135m
	$(BIN)/llm list
	$(BIN)/llm show smollm2:135m

lint: $(STAMP)
	$(BIN)/ruff check llmtui tests bench
	$(BIN)/mypy

test: setup sysdeps models lint
	$(BIN)/python -m pytest -q

bench: setup models
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
