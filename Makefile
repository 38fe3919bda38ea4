# Two entry points a fresh machine needs: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint dev bench clean tools venv

$(STAMP): pyproject.toml
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

demo: $(STAMP)
	$(BIN)/gpuq demo

dev: $(STAMP)
	$(BIN)/gpuq dev

# shellcheck (for the agent's on-start script) comes from Debian; installed when we can, else its test skips
# (fails under CI=true).
tools:
	@command -v shellcheck >/dev/null || { [ "$$(id -u)" = 0 ] && (apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq shellcheck >/dev/null) ; } || \
		echo "shellcheck unavailable: its test will be skipped (failed under CI=true)"

test: $(STAMP) tools
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
