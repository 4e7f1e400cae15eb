# Two commands for a newcomer: `make demo` and `make test`. Both create and use .venv.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export TF_CLI_CONFIG_FILE := $(CURDIR)/terraform/tests/terraformrc
export AWS_DISABLE_REQUEST_COMPRESSION := true

.PHONY: test lint typecheck pytest demo bench clean checkov sync-catalog

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

test: lint typecheck checkov pytest

demo: $(STAMP)
	$(BIN)/python -m examples.demo

bench: $(STAMP)
	$(BIN)/python bench/hotpath.py
	$(BIN)/python bench/api_calls.py
	$(BIN)/python bench/overhead.py
	$(BIN)/python bench/cost_explorer_requests.py
	$(BIN)/python bench/eta_accuracy.py
	$(BIN)/python bench/count_lines.py

# checkov pins its own boto3/botocore, older than the dev venv's, so it gets a venv of its own.
CHECKOV_VENV := .venv-checkov
CHECKOV_VERSION ?= 3.3.30
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION)

$(CHECKOV_STAMP):
	@test -d $(CHECKOV_VENV) || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet 'checkov==$(CHECKOV_VERSION)'
	@touch $(CHECKOV_STAMP)

# Fails on any failed check; skipped checks carry their reason inline in terraform/*.tf.
checkov: $(CHECKOV_STAMP)
	$(CHECKOV_VENV)/bin/checkov -d terraform --framework terraform --quiet --compact --skip-download

# terraform/metric_catalog.json is the module's own copy of the library's catalog.
sync-catalog:
	cp metricskit/catalog.json terraform/metric_catalog.json

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) .mypy_cache .ruff_cache .pytest_cache
