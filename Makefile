# Two commands for a fresh machine: `make demo` and `make test`. Everything installs into .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements/constraints.txt | sha256sum | cut -c1-12)
DEMO_DIR ?= build/demo
GROOVY_LINT_DIR := jenkins/lint
GROOVY_LINT_STAMP := $(GROOVY_LINT_DIR)/node_modules/.installed-$(shell cat $(GROOVY_LINT_DIR)/package-lock.json | sha256sum | cut -c1-12)

.PHONY: install test lint groovy-lint unit demo bench constraints clean java

$(STAMP):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "Python 3.10 or newer is needed")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python --constraint requirements/constraints.txt --editable '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

lint: install groovy-lint
	$(BIN)/ruff check mlops_module tests bench examples templates/scaffold
	$(BIN)/mypy

# npm-groovy-lint (from the npm registry, versions locked in package-lock.json; runs CodeNarc on the machine's Java)
$(GROOVY_LINT_STAMP):
	@command -v npm > /dev/null || { echo "npm (Node.js 20 or newer) is needed to lint the Jenkinsfile: apt-get install -y nodejs npm"; exit 1; }
	npm ci --prefix $(GROOVY_LINT_DIR) --no-audit --no-fund --loglevel=error
	touch $(GROOVY_LINT_STAMP)

groovy-lint: $(GROOVY_LINT_STAMP) java
	$(GROOVY_LINT_DIR)/node_modules/.bin/npm-groovy-lint --noserver --failon info --config $(GROOVY_LINT_DIR)/.groovylintrc.json \
	  Jenkinsfile jenkins/vars jenkins/jobs/deploy.Jenkinsfile

test: install lint java
	$(BIN)/pytest

java:
	@command -v java > /dev/null || { echo "Java (17 or newer) is needed by Spark (the demo and the tests): apt-get install -y openjdk-17-jre-headless"; exit 1; }

unit: install
	$(BIN)/pytest -m "not slow"

demo: install java
	$(BIN)/mlops demo --dir $(DEMO_DIR)

bench: install
	$(BIN)/python bench/parse_dags.py
	$(BIN)/python bench/package.py

constraints: install
	{ echo "# Pinned versions of everything make test installs (uv pip freeze). Regenerate with: make constraints"; \
	  $(BIN)/uv pip freeze --python $(BIN)/python --exclude-editable; } > requirements/constraints.txt.new
	mv requirements/constraints.txt.new requirements/constraints.txt

clean:
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache $(GROOVY_LINT_DIR)/node_modules
