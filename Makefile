# Set up and run persona-stream on a fresh machine (Python 3.11+, Java 17+, Maven; see README.md).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup run test lint

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $@

setup: $(STAMP)

## The main job: the whole pipeline on an embedded local Kafka.
run: setup
	$(BIN)/persona-stream kafka start
	$(BIN)/persona-stream topics create

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

## Lint, type-check, then every test against a real broker the tests start themselves.
test: lint
	$(BIN)/persona-stream schemas export --check
	$(BIN)/pytest
