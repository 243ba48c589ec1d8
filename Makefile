# Two commands for a fresh machine: `make demo` and `make test`. Everything installs into .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements/constraints.txt | sha256sum | cut -c1-12)
DEMO_OUT ?= build/demo
EXAMPLE ?= examples/churn/model.yaml
STANDS := local mdp int lt prom

.PHONY: install test lint unit demo bench constraints clean java

$(STAMP):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "Python 3.10 or newer is needed")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python --constraint requirements/constraints.txt --editable '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(BIN)/ruff check mlops_module tests bench examples
	$(BIN)/mypy

test: install lint java
	$(BIN)/pytest

java:
	@command -v java > /dev/null || { echo "Java (17 or newer) is needed for the Spark tests: apt-get install -y openjdk-17-jre-headless"; exit 1; }

unit: install
	$(BIN)/pytest -m "not slow"

demo: install
	@for stand in $(STANDS); do \
	  $(BIN)/mlops render $(EXAMPLE) --stand $$stand --out $(DEMO_OUT)/$$stand > /dev/null || exit 1; \
	done
	@$(BIN)/mlops validate $(EXAMPLE)
	@echo
	@echo "Rendered $(EXAMPLE) for every stand into $(DEMO_OUT)/<stand>/:"
	@find $(DEMO_OUT) -type f | sort | sed 's/^/  /'
	@echo
	@echo "Look at them:"
	@echo "  less $(DEMO_OUT)/prom/churn-classifier__prom__train.py          # the train DAG on production"
	@echo "  diff -r $(DEMO_OUT)/mdp $(DEMO_OUT)/prom                         # what differs between stands"
	@echo "  $(BIN)/mlops render $(EXAMPLE) --stand local --out $(DEMO_OUT)/local  # again: byte-identical"

bench: install
	$(BIN)/python bench/parse_dags.py
	$(BIN)/python bench/package.py

constraints: install
	{ echo "# Pinned versions of everything make test installs (uv pip freeze). Regenerate with: make constraints"; \
	  $(BIN)/uv pip freeze --python $(BIN)/python --exclude-editable; } > requirements/constraints.txt.new
	mv requirements/constraints.txt.new requirements/constraints.txt

clean:
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache
