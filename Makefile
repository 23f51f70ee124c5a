# Every target bootstraps its own virtual environment in .venv; `make setup` does only that.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_WORKERS ?= 2

.PHONY: setup demo test test-fast check fmt bench lock clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[dev]'
	touch $(STAMP)

demo: setup
	$(BIN)/python examples/demo.py

test: setup
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadgroup

test-fast: setup
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadgroup -m "not slow"

check: setup
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/mypy
	$(BIN)/lint-imports

fmt: setup
	$(BIN)/ruff check --fix src tests bench examples
	$(BIN)/ruff format src tests bench examples

bench: setup
	$(BIN)/python bench/peers.py ensure
	$(BIN)/python bench/bench_cli.py
	$(BIN)/python bench/bench_tracking.py
	$(BIN)/python bench/bench_pipelines.py
	$(BIN)/python bench/bench_analyze.py
	$(BIN)/python bench/bench_drift.py

# Re-pin every dependency of the dev environment (run after changing pyproject.toml).
lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	.venv-lock/bin/python -m pip freeze --exclude-editable | grep -v '^conveyor' > requirements.lock
	rm -rf .venv-lock

clean:
	rm -rf $(VENV) .conveyor .mypy_cache .ruff_cache .pytest_cache
