# The README's two commands: `make run` (the main job) and `make test` (the whole suite).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TOPIC ?= cheeses of the world
COUNT ?= 200

.PHONY: setup run test test-unit test-redis lint bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,local]'
	touch $@

run: setup
	$(BIN)/producer run --topic "$(TOPIC)" --count $(COUNT) --output unique.jsonl

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

# The fast layers alone: no Redis (seconds), then a real redis-server in eager mode.
test-unit: setup
	$(BIN)/pytest tests/unit

test-redis: setup
	$(BIN)/pytest tests/redis

bench: setup
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
