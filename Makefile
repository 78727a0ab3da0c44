# The two commands a newcomer needs (each makes its own virtual environment in .venv on first use):
#   make pipeline   run the whole pipeline on the embedded default store ($FSML_HOME, default ~/.fullstack_ml)
#   make test       check the notebooks are clean and exported, then run the notebook tests and pytest
# and for reading the course:
#   make lab        JupyterLab on the course (nbs/), on this environment, with your own FSML_HOME
#   make docs       the course as a static site in _site/: every chapter executed at the smoke profile
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

FSML_HOME ?= $(HOME)/.fullstack_ml

.PHONY: install pipeline test check nbtest pytest clean lab docs

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

# the learner's own store (FSML_HOME), this environment's Python first on PATH so kernels run it
lab: $(STAMP)
	FSML_HOME="$(FSML_HOME)" PATH="$(abspath $(BIN)):$$PATH" $(BIN)/jupyter lab --notebook-dir=nbs $(ARGS)

# a throw-away store: runs the smoke pipeline, executes the library chapters, renders everything to _site/
SITE ?= _site
docs: $(STAMP)
	$(BIN)/python tools/build_docs.py --out $(SITE)

clean:
	rm -rf $(VENV) build dist *.egg-info test-artifacts _site
