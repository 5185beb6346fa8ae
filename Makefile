# The README's two commands: `make run` (the main job) and `make test` (the whole suite).
# Every environment here installs exactly its lock (requirements/*.txt, hashes checked; see
# docs/dependencies.md): the lock decides what a fresh machine gets, not the day.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TOOLS ?= .venv-tools
UVENV ?= .venv-uv
UV := $(UVENV)/bin/uv
LATEST ?= .venv-latest
TOPIC ?= cheeses of the world
COUNT ?= 200
# pip installs the lock as it is: every file's hash checked, nothing resolved beyond it
PIP_LOCKED := -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r
# uv resolves; universal, so one lock serves every platform and Python from 3.11 on
COMPILE := pip compile --quiet --universal --python-version 3.11 --custom-compile-command "make lock"

.PHONY: setup run test test-unit test-redis test-latest lint bench clean deploy-tools lock

setup: $(VENV)/.installed

$(VENV)/.installed: requirements/dev.txt pyproject.toml
	$(PYTHON) -m venv --clear $(VENV)
	$(BIN)/python $(PIP_LOCKED) requirements/dev.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
	touch $@

run: setup
	$(BIN)/producer run --topic "$(TOPIC)" --count $(COUNT) --output unique.jsonl

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

test: lint deploy-tools
	DEPLOY_TOOLS_DIR=$(abspath $(TOOLS))/bin $(BIN)/pytest

# The tools that check deploy/ (tests/unit/test_deploy.py), in a venv of their own:
# docker-compose 1.29 (the last one on PyPI) pins PyYAML<6, which no longer builds, so its
# lock holds it alone (tools-nodeps.txt) beside what it really needs (tools.txt).
deploy-tools: $(TOOLS)/.installed

$(TOOLS)/.installed: requirements/tools.txt requirements/tools-nodeps.txt
	$(PYTHON) -m venv --clear $(TOOLS)
	$(TOOLS)/bin/python $(PIP_LOCKED) requirements/tools.txt
	$(TOOLS)/bin/python $(PIP_LOCKED) requirements/tools-nodeps.txt
	touch $@

# The fast layers alone: no Redis (seconds), then a real redis-server in eager mode.
test-unit: setup
	$(BIN)/pytest tests/unit

test-redis: setup
	$(BIN)/pytest tests/redis

bench: setup
	$(BIN)/python -m bench

# The lock tool, itself locked.
$(UVENV)/.installed: requirements/uv.txt
	$(PYTHON) -m venv --clear $(UVENV)
	$(UVENV)/bin/python $(PIP_LOCKED) requirements/uv.txt
	touch $@

# Refresh every lock from pyproject.toml and requirements/*.in: the newest versions their
# ranges allow. Commit the result with the change that asked for it.
lock: $(UVENV)/.installed
	$(UV) $(COMPILE) --generate-hashes --upgrade pyproject.toml requirements/build.in --extra dev --extra local -o requirements/dev.txt
	$(UV) $(COMPILE) --generate-hashes --upgrade pyproject.toml requirements/build.in -o requirements/runtime.txt
	$(UV) $(COMPILE) --generate-hashes --upgrade requirements/tools.in -o requirements/tools.txt
	$(UV) $(COMPILE) --generate-hashes --upgrade --no-deps requirements/tools-nodeps.in -o requirements/tools-nodeps.txt
	$(UV) $(COMPILE) --generate-hashes --upgrade requirements/uv.in -o requirements/uv.txt

# The suite in a throwaway environment with the newest versions pyproject.toml allows (not
# the lock): what the next `make lock` would bring, and which packages moved.
test-latest: $(UVENV)/.installed deploy-tools
	$(UV) $(COMPILE) --upgrade pyproject.toml requirements/build.in --extra dev --extra local -o $(LATEST).txt
	$(PYTHON) -m venv --clear $(LATEST)
	$(LATEST)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -r $(LATEST).txt
	$(LATEST)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(PYTHON) scripts/lockdiff.py requirements/dev.txt $(LATEST).txt
	$(LATEST)/bin/ruff check . && $(LATEST)/bin/mypy && \
		DEPLOY_TOOLS_DIR=$(abspath $(TOOLS))/bin $(LATEST)/bin/pytest; \
		status=$$?; $(PYTHON) scripts/lockdiff.py requirements/dev.txt $(LATEST).txt; exit $$status

clean:
	rm -rf $(VENV) $(TOOLS) $(UVENV) $(LATEST) $(LATEST).txt *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
