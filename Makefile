# Quick start: `make demo` (ingestion against the embedded fake server) and `make test`.
# One venv; each target installs only the extras it needs, once (a stamp per extras set),
# without compiling every module up front (each is compiled when first imported):
# `make demo` needs the package and [cli] only, `make lint` adds [dev],
# `make test` and `make bench` add [dev] and [bench] (one install of both), `make docs` [docs].
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check --no-compile

.PHONY: demo test lint bench docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-%: pyproject.toml | $(BIN)/python
	$(PIP) -e '.[$*]'
	touch $@

demo: $(VENV)/.installed-cli
	$(BIN)/yamarket-chats demo

# The whole suite on WORKERS pytest-xdist processes, in random order (pytest-randomly),
# with branch coverage of the package in every process the tests start; the report
# fails under the floor set in pyproject.toml. Tests wait on subprocesses and servers
# as much as they compute, so more workers than cores pays, up to a point: each one
# collects the whole suite (2 cores, warm .venv, one run each: 2 workers took 145 s,
# 3 took 120 s, 4 took 133 s; on 2026-12-07, the suite grown by Redis Cluster, fallback
# and fleet tests that mostly wait on servers and quota windows: 3 took 203 s, 4 took
# 188 s). Bytecode is cached even where PYTHONDONTWRITEBYTECODE is set: every worker
# would otherwise recompile (and pytest re-rewrite) hundreds of modules. The suite also runs the benchmark harness at a tiny size: [bench].
WORKERS ?= 4
# A new order each run, shown in the command line: `make test SEED=N` repeats one.
SEED ?= $(shell od -An -N4 -tu4 /dev/urandom | tr -d ' ')
test: $(VENV)/.installed-dev,bench
	$(BIN)/coverage erase
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/coverage run -m pytest -q -n $(WORKERS) \
		--randomly-seed=$(SEED)
	$(BIN)/coverage combine -q
	$(BIN)/coverage report

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check yamarket_chats tests benchmarks noxfile.py
	$(BIN)/ruff format --check yamarket_chats tests benchmarks noxfile.py
	$(BIN)/mypy --strict yamarket_chats

bench: $(VENV)/.installed-dev,bench
	$(BIN)/python -m benchmarks

# The documentation site (mkdocs-material, mkdocstrings) into site/: the guides of
# docs/ and an API reference read from the docstrings. --strict: a broken link or
# a docstring it cannot read fails the build.
docs: $(VENV)/.installed-docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

clean:
	rm -rf $(VENV) site .nox .pytest_cache .mypy_cache .ruff_cache .coverage .coverage.*
