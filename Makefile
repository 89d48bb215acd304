# Postier — the two commands a newcomer needs:
#   make run    start a server on the embedded defaults (SMTP 127.0.0.1:2525, submission 127.0.0.1:2587)
#   make test   install what the tests need (Python and Debian packages), then lint, types, layers, tests
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.stamp-install

.PHONY: run test check lint types layers pytest peers install clean bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test,fast,postgres]'
	touch $(STAMP)

install: $(STAMP)

# As root (a container, a fresh VM) the development server runs with --allow-root: it listens on
# loopback only. In production, set [server] user and Postier drops root after binding its ports.
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

run: $(STAMP)
	$(BIN)/postier serve $(ROOT_FLAG)

peers:
	./scripts/install-peers

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

types: $(STAMP)
	$(BIN)/mypy

layers: $(STAMP)
	$(BIN)/lint-imports

pytest: $(STAMP) peers
	$(BIN)/pytest -q $(PYTEST_ARGS)

check: lint types layers

test: install peers check pytest

bench: $(STAMP) peers
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
