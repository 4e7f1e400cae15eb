# Two commands for a newcomer: `make demo` and `make test`. Both create and use .venv.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export TF_CLI_CONFIG_FILE := $(CURDIR)/terraform/tests/terraformrc
export AWS_DISABLE_REQUEST_COMPRESSION := true

.PHONY: test lint typecheck pytest demo bench clean

$(STAMP): pyproject.toml
	@test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest

test: lint typecheck pytest

demo: $(STAMP)
	$(BIN)/python -m examples.demo

bench: $(STAMP)
	$(BIN)/python bench/hotpath.py
	$(BIN)/python bench/api_calls.py
	$(BIN)/python bench/eta_accuracy.py
	$(BIN)/python bench/count_lines.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
