# Two commands for a newcomer: `make demo` and `make test`. Both create and use .venv.
# `:=`, not `?=`: a PYTHON variable in the environment (node-gyp sets one) is not ours; another
# interpreter is chosen on the command line, e.g. `make test PYTHON=python3.12`.
PYTHON := python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export TF_CLI_CONFIG_FILE := $(CURDIR)/terraform/tests/terraformrc
export AWS_DISABLE_REQUEST_COMPRESSION := true

.PHONY: test lint typecheck pytest demo bench clean checkov sync-catalog lock

# constraints/*.txt pin every package to the versions CI last passed with; `make lock` renews them.
DEV_CONSTRAINTS := constraints/dev.txt
CHECKOV_CONSTRAINTS := constraints/checkov.txt

# major.minor of the interpreter $(1); empty when there is none.
python_version = $(shell $(1) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
WANTED_VERSION := $(call python_version,$(PYTHON))
# `make test PYTHON=python3.12` after a 3.11 venv: the venv is made again with the named
# interpreter (when it exists), so the suite really runs on it.
ifeq ($(origin PYTHON)$(WANTED_VERSION),command line)
$(error PYTHON=$(PYTHON): no such Python interpreter; name an installed Python 3.11 or later)
endif
ifneq ($(WANTED_VERSION),)
ifneq ($(call python_version,$(BIN)/python),$(WANTED_VERSION))
$(shell rm -f $(STAMP))
endif
endif

# Make a venv at $(1) unless one is there that has pip and Python 3.11+ (and, when $(2) is given,
# that major.minor): a venv left half-made by an interrupted install, or made by another
# interpreter, is made again rather than reused.
define fresh_venv
	@$(1)/bin/python -c 'import pip, sys; v = "%d.%d" % sys.version_info[:2]; sys.exit(sys.version_info < (3, 11) or "$(2)" not in ("", v))' 2>/dev/null || { \
	  command -v $(PYTHON) >/dev/null || { echo "make: $(PYTHON) not found; install Python 3.11 or name another 3.11+ interpreter, e.g. make test PYTHON=python3.12" >&2; exit 1; }; \
	  rm -rf $(1) && $(PYTHON) -m venv $(1); }
endef

$(STAMP): pyproject.toml $(DEV_CONSTRAINTS)
	$(call fresh_venv,$(VENV),$(WANTED_VERSION))
	$(BIN)/python -m pip install --quiet --upgrade pip -c $(DEV_CONSTRAINTS)
	$(BIN)/python -m pip install --quiet -e '.[dev]' -c $(DEV_CONSTRAINTS)
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
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed

$(CHECKOV_STAMP): $(CHECKOV_CONSTRAINTS)
	$(call fresh_venv,$(CHECKOV_VENV))
	$(CHECKOV_VENV)/bin/python -m pip install --quiet checkov -c $(CHECKOV_CONSTRAINTS)
	@touch $(CHECKOV_STAMP)

# Fails on any failed check; skipped checks carry their reason inline in terraform/*.tf.
checkov: $(CHECKOV_STAMP)
	$(CHECKOV_VENV)/bin/checkov -d terraform --framework terraform --quiet --compact --skip-download

# terraform/metric_catalog.json is the module's own copy of the library's catalog.
sync-catalog:
	cp metricskit/catalog.json terraform/metric_catalog.json

# Renew the pins from the newest releases the package index offers; then run `make test`.
LOCK_VENV := .venv-lock
lock:
	rm -rf $(LOCK_VENV) && $(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LOCK_VENV)/bin/python -m pip install --quiet -e '.[dev]'
	{ echo '# Exact versions the dev virtual environment was tested with (make lock rewrites this file).'; \
	  $(LOCK_VENV)/bin/pip freeze --all --exclude-editable | grep -v '^setuptools=='; } > $(DEV_CONSTRAINTS)
	rm -rf $(LOCK_VENV) && $(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet checkov
	{ echo "# Exact versions checkov's own virtual environment was tested with (make lock rewrites this file)."; \
	  $(LOCK_VENV)/bin/pip freeze --all | grep -v '^setuptools=='; } > $(CHECKOV_CONSTRAINTS)
	rm -rf $(LOCK_VENV)

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) $(LOCK_VENV) .mypy_cache .ruff_cache .pytest_cache
