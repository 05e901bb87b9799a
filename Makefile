# The two entry points are `make demo` and `make test`; each sets up what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_STATE := .state/demo

.PHONY: setup demo test lint typecheck pytest template clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
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

test: lint typecheck pytest

clean:
	rm -rf $(VENV) .aws-sam .state
