# Two entry points a fresh machine needs: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LLAMA_VENV := $(VENV)/llama
LLAMA_STAMP := $(LLAMA_VENV)/.installed

.PHONY: demo test lint dev bench clean tools venv llama

$(STAMP): pyproject.toml
	# mkdir -p first in both venv recipes: `make -j3` runs them at once, and venv's own mkdir of .venv races.
	mkdir -p $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	# The emulator pins an old protobuf: install it beside the current client, without its deps.
	$(BIN)/pip install --quiet --no-deps 'gcloud-tasks-emulator==0.6.2'
	# The official Vast.ai CLI pins its own crypto stack: it gets a venv of its own (tests run it as a tool).
	$(PYTHON) -m venv $(VENV)/vastai
	$(VENV)/vastai/bin/pip install --quiet 'vastai==1.9.1'
	touch $(STAMP)

# The venv alone (the package, its dev tools, the tasks emulator and the vastai CLI's own venv).
venv: $(STAMP)

# A real OpenAI-compatible model server for tests/realserver: llama-cpp-python's, in a venv of its own. It
# has no Linux wheel on PyPI, so pip builds llama.cpp from source: only the libraries its Python code loads
# (tests/realserver/llama_build.cmake), about 2 minutes on 2 cores; pip's wheel cache makes a reinstall on
# the same machine take seconds. Versions pinned: the tests assert what this server sends.
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
	-DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAVA_BUILD=OFF \
	-DCMAKE_PROJECT_llama.cpp_INCLUDE=$(CURDIR)/tests/realserver/llama_build.cmake
$(LLAMA_STAMP): tests/realserver/llama_build.cmake
	mkdir -p $(VENV)
	$(PYTHON) -m venv $(LLAMA_VENV)
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(LLAMA_VENV)/bin/pip install --quiet 'llama-cpp-python[server]==0.3.36' \
		'fastapi==0.165.0' 'uvicorn==0.55.0' 'sse-starlette==3.7.1' 'starlette-context==0.3.6' \
		'pydantic-settings==2.16.3' 'numpy==2.4.6'
	touch $(LLAMA_STAMP)

llama: $(LLAMA_STAMP)

demo: $(STAMP)
	$(BIN)/gpuq demo

dev: $(STAMP)
	$(BIN)/gpuq dev

# shellcheck (for the agent's on-start script) and chromium (the dashboard's browser test, driven by Playwright)
# come from Debian; installed when we can, else their tests skip (fail under CI=true).
tools:
	@command -v shellcheck >/dev/null || { [ "$$(id -u)" = 0 ] && (apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq shellcheck >/dev/null) ; } || \
		echo "shellcheck unavailable: its test will be skipped (failed under CI=true)"
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && (apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) ; } || \
		echo "chromium unavailable: the dashboard's browser test will be skipped (failed under CI=true)"

# The three set-ups are independent (pip downloads, a C++ build, apt): one make runs them side by side.
test:
	@$(MAKE) --no-print-directory -j3 $(STAMP) $(LLAMA_STAMP) tools
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy shared functions agent
	$(BIN)/mypy tests bench
	$(BIN)/lint-imports
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy shared functions agent
	$(BIN)/ruff format --check .

# Benchmarks (not part of make test; tests/bench runs them tiny). Results in bench/results/.
bench: $(STAMP)
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) .gpuq .pytest_cache
