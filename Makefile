# Set up and run persona-stream on a fresh machine (see README.md).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NODE_TOOLS := tests/browser/node_modules/.installed
JS_DEPS    := clients/js/node_modules/.installed

.PHONY: setup run test lint js chromium promtool

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $@

setup: $(STAMP)

## The main job: the whole pipeline on an embedded local Kafka, with the simulator's demo traffic.
run: setup
	$(BIN)/persona-stream run --demo

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .
	$(BIN)/lint-imports
	$(BIN)/persona-stream schemas export --check

$(NODE_TOOLS): tests/browser/package-lock.json
	npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error
	touch $@

$(JS_DEPS): clients/js/package-lock.json
	npm ci --prefix clients/js --no-audit --no-fund --loglevel=error
	touch $@

## The browser bridge: format and types, build, unit tests, bundle size.
js: $(JS_DEPS)
	npm --prefix clients/js run --silent lint
	npm --prefix clients/js run --silent build
	npm --prefix clients/js test --silent
	npm --prefix clients/js run --silent size

## Chromium from the distribution, for the browser tests (never a downloaded browser).
chromium:
	@test -x /usr/bin/chromium || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; }

## promtool from the distribution (Debian package prometheus), for the checks of deploy/.
promtool:
	@command -v promtool >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends prometheus; }

## Lint, type-check, then every test against a real broker the tests start themselves.
test: lint js $(NODE_TOOLS) chromium promtool
	$(BIN)/pytest
