# The two quickstart commands, each installing into .venv on first use (the install is redone when pyproject.toml changes).
#   make quickstart [ARGS="key=value ..."]   run the main job on the embedded default
#   make test                                run the test suite (what CI runs)
# TORCH picks the torch build: the default is the CPU wheel; on a GPU machine use e.g. TORCH="torch torchvision".
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0 torchvision==0.28.0
PYTEST_ARGS ?=

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install $(TORCH) -e ".[test]"
	touch $@

.PHONY: quickstart test
quickstart: $(VENV)/.installed
	$(VENV)/bin/python -m longrl.trainer.main $(ARGS)

test: $(VENV)/.installed
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)
