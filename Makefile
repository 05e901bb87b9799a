# The two entry points are `make demo` and `make test`; each sets up what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_STATE := .state/demo
# aws-sam-cli gets its own venv because its pins conflict with the project's dev dependencies.
SAM_VENV := .venv-sam
SAM_BIN := $(SAM_VENV)/bin
SAM_STAMP := $(SAM_VENV)/.installed
# The SAM CLI sends usage telemetry unless this is 0; the checks below need no AWS account.
SAM_ENV := SAM_CLI_TELEMETRY=0

.PHONY: setup demo test lint typecheck pytest template clean test-label-studio

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip > $(VENV)/pip.log 2>&1 || (cat $(VENV)/pip.log; exit 1)
	$(BIN)/pip install --quiet -e '.[dev]' >> $(VENV)/pip.log 2>&1 || (cat $(VENV)/pip.log; exit 1)
	touch $(STAMP)

demo: setup
	CUSTOM_METRICS_STATE_DIR=$(DEMO_STATE) $(BIN)/custom-metrics deploy demo-ner examples/metrics/span_overlap.py \
		--tag team annotation-quality
	CUSTOM_METRICS_STATE_DIR=$(DEMO_STATE) $(BIN)/custom-metrics agreement demo-ner examples/data/ner_3annotators.json

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

pytest: setup
	$(BIN)/pytest -q

$(SAM_STAMP):
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_BIN)/pip install --quiet --upgrade pip
	$(SAM_BIN)/pip install --quiet 'aws-sam-cli>=1.170,<2'
	touch $(SAM_STAMP)

template: $(SAM_STAMP)
	$(SAM_ENV) $(SAM_BIN)/sam validate --lint --template-file template.yaml
	$(SAM_BIN)/cfn-lint template.yaml
	$(SAM_ENV) $(SAM_BIN)/sam build --template-file template.yaml --build-dir .aws-sam/build

test: template lint typecheck pytest

clean:
	rm -rf $(VENV) $(SAM_VENV) .aws-sam .state

# Starts a real Label Studio 1.23.2 on 127.0.0.1 (installed once into .venv-label-studio, ~1 GB).
test-label-studio: setup
	scripts/label-studio-test.sh
