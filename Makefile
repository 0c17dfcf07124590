# huiyuan — the two commands that matter: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PYSTAMP := $(VENV)/.installed
JSSTAMP := node_modules/.installed
PYTEST_ARGS ?=

.PHONY: install assets system-deps demo serve test lint typecheck fmt bench clean migration

$(PYSTAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(PYSTAMP)

$(JSSTAMP): package.json
	npm install --no-audit --no-fund --loglevel=error
	touch $(JSSTAMP)

install: $(PYSTAMP) $(JSSTAMP)

assets: $(JSSTAMP)

# Chromium, its driver and CJK fonts for the console's browser tests; PostgreSQL if no server answers.
system-deps:
	bash scripts/system-deps.sh

demo: install
	$(BIN)/huiyuan demo

serve: install
	$(BIN)/huiyuan serve

lint: $(PYSTAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(PYSTAMP)
	$(BIN)/mypy

fmt: $(PYSTAMP)
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

# Two workers that take each other's queued tests when idle; slow tests start first (tests/conftest.py).
# Bytecode is written even where PYTHONDONTWRITEBYTECODE is set: each worker and every server a test
# starts would otherwise compile the sources and rewrite the test modules again (collection: 23 s of
# CPU per process without the cache, 11 s with it).
test: install system-deps lint typecheck
	PYTHONDONTWRITEBYTECODE= $(BIN)/pytest -n 2 --dist worksteal $(PYTEST_ARGS)

bench: install
	$(BIN)/python -m bench.run

migration: $(PYSTAMP)
	bash scripts/regen-migration.sh

clean:
	rm -rf $(VENV) node_modules huiyuan.db huiyuan.db-* huiyuan-jobs.db* huiyuan-warehouse.duckdb* demo-credentials.json
