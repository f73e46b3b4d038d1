# Quick start: `make demo` (ingestion against the embedded fake server) and `make test`.
# One venv; each target installs only the extras it needs, once (a stamp per extras set):
# `make demo` needs the package and [cli] only, `make lint` adds [dev],
# `make test` and `make bench` add [dev] and [bench].
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-%: pyproject.toml | $(BIN)/python
	$(PIP) -e '.[$*]'
	touch $@

demo: $(VENV)/.installed-cli
	$(BIN)/yamarket-chats demo

# The suite also runs the benchmark harness at a tiny size, which needs [bench].
test: $(VENV)/.installed-dev $(VENV)/.installed-bench
	$(BIN)/pytest -q

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check yamarket_chats tests benchmarks
	$(BIN)/ruff format --check yamarket_chats tests benchmarks
	$(BIN)/mypy --strict yamarket_chats

bench: $(VENV)/.installed-dev $(VENV)/.installed-bench
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
