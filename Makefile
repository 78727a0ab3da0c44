# The two commands a newcomer needs (each makes its own virtual environment in .venv on first use):
#   make pipeline   run the whole pipeline on the embedded default store ($FSML_HOME, default ~/.fullstack_ml)
#   make test       check the notebooks are clean and exported, then run the notebook tests and pytest
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install pipeline test check nbtest pytest clean

install: $(STAMP)

# torch is pinned first so pip takes this machine's CPU build, not a multi-GB CUDA one
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

pipeline: $(STAMP)
	$(BIN)/fsml pipeline $(ARGS)

check: $(STAMP)
	$(BIN)/python tools/check_notebooks.py

nbtest: $(STAMP)
	$(BIN)/nbdev-test --n-workers 2

pytest: $(STAMP)
	$(BIN)/pytest -q -ra $(PYTEST_ARGS)

test: check nbtest pytest

clean:
	rm -rf $(VENV) build dist *.egg-info test-artifacts
