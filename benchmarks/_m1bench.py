"""Shared helpers of the m1_budget performance benchmarks (bench_overhead, bench_sweep, bench_throughput).

Models. Each benchmark runs on the tiny Qwen2 (``devmodels.tiny_qwen2``, rebuilt with head size 32
because vLLM's CPU attention supports 32, 64, ... only) and on SmolLM2-135M-Instruct
(``devmodels.smollm2``), both in a *never-stop* variant: the output-embedding rows of the special
tokens are zeroed (embeddings untied), so their logit is exactly 0 while the largest logit is
positive, and greedy decoding never emits ``<|im_end|>``/``<|im_start|>``/``<|endoftext|>``. Every
request then runs to its token limit on every system, so "the same number of tokens on the same
requests" holds by construction (each benchmark checks it) and timings compare like with like.

Timing. Each system is built once (model load excluded); runs alternate between systems and the
median of ``--repeats`` is reported, because this 2-core machine is shared and noisy.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
WORK = HERE / "work"  # git-ignored: model variants, trace caches, lm-eval outputs

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
if not os.environ.get("M1_HARNESS_DATA"):
    shared = REPO.parent / "shared" / "data" / "eval"
    if shared.is_dir():
        os.environ["M1_HARNESS_DATA"] = str(shared)

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")


def single_thread() -> None:
    """One torch thread for the transformers runs (call before torch is imported).

    With two OpenMP threads on a shared 2-core machine, a descheduled thread leaves the other
    spinning: CPU *and* wall time then swing by 10x between identical runs. One thread measures the
    work itself; both systems of a comparison run in the same process with the same setting."""
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


def tiny_model(directory: Path) -> Path:
    """The tiny Qwen2 with head size 32 (vLLM CPU) and varied greedy output."""
    from m1_harness.devmodels import tiny_qwen2_vllm

    return tiny_qwen2_vllm(directory)


def never_stop(src: Path, directory: Path) -> Path:
    """Copy ``src`` with untied, zeroed output rows for the special tokens (see module doc)."""
    if (directory / "config.json").is_file():
        return directory
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(src)
    model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32)
    ids = sorted({tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS if t in tok.get_vocab()})
    weight = model.get_output_embeddings().weight.detach().clone()
    weight[ids] = 0.0
    model.config.tie_word_embeddings = False
    if getattr(model.config, "text_config", None) is not None:
        model.config.text_config.tie_word_embeddings = False
    model.lm_head = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    model.lm_head.weight = torch.nn.Parameter(weight)
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    for f in Path(src).iterdir():
        if f.name in ("generation_config.json", "chat_template.jinja") and not (tmp / f.name).exists():
            shutil.copy(f, tmp / f.name)
    tmp.rename(directory)
    return directory


def models(which: list[str]) -> dict[str, Path]:
    """Model name -> never-stop checkpoint dir, built once under benchmarks/work/models."""
    from m1_harness.devmodels import smollm2

    root = WORK / "models"
    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in which:
        if name == "tiny":
            out[name] = never_stop(tiny_model(root / "tiny-hd32"), root / "tiny-hd32-never-stop")
        elif name == "smollm2":
            out[name] = never_stop(smollm2(), root / "smollm2-135m-never-stop")
        else:
            raise SystemExit(f"unknown model {name!r}: tiny or smollm2")
    return out


def shim_lm_eval_vllm() -> None:
    """lm-eval's ``vllm`` model calls ``importlib.metadata.version("vllm")``, which fails on the
    ``vllm-cpu`` distribution (benchmark-only shim). The answer must keep vLLM's own CPU detection
    working: vLLM itself asks ``version("vllm")`` first and, when that fails, treats
    ``version("vllm-cpu") + "+cpu"`` as a CPU build. Answering a bare ``vllm.__version__``
    ("0.32.0") would make vLLM find no platform at all ("Device string must not be empty")."""
    import importlib.metadata as md

    if getattr(md.version, "_m1_shim", False):
        return
    original = md.version

    def version(name):
        try:
            return original(name)
        except md.PackageNotFoundError:
            if name == "vllm":
                return original("vllm-cpu") + "+cpu"
            raise

    version._m1_shim = True
    md.version = version


def build_lm(name: str, args: dict):
    """An lm-eval model instance from the registry (what ``simple_evaluate(model=name, model_args=...)`` builds)."""
    from m1_harness import _autoload

    _autoload.register_model()
    from lm_eval.api.registry import get_model

    arg_string = ",".join(f"{k}={v}" for k, v in args.items())
    return get_model(name).create_from_arg_string(arg_string, {})


def child_pids() -> set[int]:
    import psutil

    return {c.pid for c in psutil.Process().children(recursive=True)}


def cpu_seconds(pids=(), include_self: bool = True) -> float:
    """User + system CPU seconds of this process and of ``pids`` (e.g. one vLLM engine's processes).

    On this shared 2-core machine wall time swings with other people's jobs; CPU time counts the
    work actually done, so it is the primary measure (wall time is reported beside it)."""
    import psutil

    total = 0.0
    for pid in [None, *pids] if include_self else list(pids):
        try:
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


class Timed:
    """Wrap ``lm.generate_until`` to record generation-only wall and CPU seconds and the responses.

    ``pids``: the child processes doing this model's work (vLLM's engine core and workers)."""

    def __init__(self, lm, pids=()):
        self.lm, self.pids = lm, sorted(pids)
        self.reset()
        inner = lm.generate_until

        def generate_until(requests, *a, **k):
            t0, c0 = time.perf_counter(), cpu_seconds(self.pids)
            out = inner(requests, *a, **k)
            self.seconds += time.perf_counter() - t0
            self.cpu += cpu_seconds(self.pids) - c0
            self.responses.extend(out)
            return out

        lm.generate_until = generate_until

    def reset(self):
        self.seconds, self.cpu, self.responses = 0.0, 0.0, []


def build_with_pids(name: str, args: dict):
    """``build_lm`` and the child processes it started (vLLM engine core and workers; none for hf)."""
    before = child_pids()
    lm = build_lm(name, args)
    return lm, child_pids() - before


def idle_cpu_per_s(pids, seconds: float = 3.0) -> float:
    """CPU seconds per second that ``pids`` burn while idle (vLLM's engine core may poll)."""
    c0 = cpu_seconds(pids, include_self=False)
    time.sleep(seconds)
    return round((cpu_seconds(pids, include_self=False) - c0) / seconds, 3)


_TASK_MANAGER = None


def task_manager():
    """One TaskManager per process: indexing lm-eval's task YAMLs costs tens of seconds here."""
    global _TASK_MANAGER
    if _TASK_MANAGER is None:
        from lm_eval.tasks import TaskManager

        _TASK_MANAGER = TaskManager()
    return _TASK_MANAGER


def evaluate(lm, task: str, limit: int, gen_kwargs: dict | None = None, apply_chat_template: bool = False):
    """One ``lm_eval.simple_evaluate`` run; returns (wall seconds, results dict)."""
    import lm_eval

    t0 = time.perf_counter()
    res = lm_eval.simple_evaluate(
        model=lm,
        tasks=[task],
        limit=limit,
        gen_kwargs=gen_kwargs or None,
        log_samples=True,
        apply_chat_template=apply_chat_template,
        bootstrap_iters=0,
        random_seed=0,
        numpy_random_seed=0,
        torch_random_seed=0,
        fewshot_random_seed=0,
        task_manager=task_manager(),
    )
    return time.perf_counter() - t0, res


def warm_up(engine) -> None:
    """One short generate call straight on an engine (no lm-eval, no trace cache)."""
    from m1_harness.thinking.engines.base import GenRequest

    ids = list(engine.tokenizer.encode("The patient presents with fever.", add_special_tokens=False))
    engine.generate([GenRequest(ids, 8), GenRequest(ids[:3], 8)])


def turns(rep: int, systems: tuple[str, str]) -> tuple[str, str]:
    """The order of two systems in repetition ``rep``: swapped every other time, because on this
    machine the first of two back-to-back identical runs measured up to 1.3x slower than the second
    (two identical m1_budget models, alternating, 4 pairs); use an even number of repeats."""
    return systems if rep % 2 == 0 else systems[::-1]


def forget_prefixes(model):
    """Empty the prefix cache of an m1_budget model, an engine, or lm-eval's ``vllm`` model, so a timed
    run reuses no KV of an earlier run (lm-eval's ``hf`` keeps none between calls); within the run it
    works as it always does. Returns ``model``.

    vLLM's cache is emptied too (until 2026-11-30 it was not: a repeat then found its prompts cached
    whenever the KV cache had kept them, 40 s of 135 s for 64 SmolLM2 prompts at 4 GiB on this CPU)."""
    engine = getattr(model, "engine", model)
    cache = getattr(engine, "prefix_cache", None)
    if cache is not None:
        cache.clear()
    llm = getattr(engine, "llm", None) or getattr(model, "model", None)  # ours / lm-eval's vllm
    reset = getattr(llm, "reset_prefix_cache", None)
    if callable(reset) and not reset():
        raise RuntimeError("vLLM did not empty its prefix cache (requests still in flight?)")
    return model


def timed_evaluate(timer: Timed, lm, task: str, limit: int, gen_kwargs: dict | None = None, **kw) -> float:
    """One timed ``evaluate`` of ``lm`` starting from an empty prefix cache; ``timer`` then holds
    its generation-only CPU and wall seconds and responses. Returns the whole run's wall seconds."""
    forget_prefixes(lm)
    timer.reset()
    wall, _ = evaluate(lm, task, limit, gen_kwargs, **kw)
    return wall


def release(*lms) -> None:
    """Shut down vLLM engine processes (ours or lm-eval's) so the next model has the memory."""
    import gc

    for lm in lms:
        llm = getattr(getattr(lm, "engine", None), "llm", None) or getattr(lm, "model", None)
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()
    del lms
    gc.collect()


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def environment() -> dict:
    import torch
    import transformers

    info = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_avg_at_start": os.getloadavg(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "torch_threads": torch.get_num_threads(),
    }
    try:
        import vllm

        info["vllm"] = vllm.__version__
    except ImportError:
        pass
    return info


def _row_key(row: dict) -> tuple:
    return tuple(
        row.get(k) for k in ("model", "requests", "thinking_budget", "answer_budget", "new_tokens", "kv_cache_gib")
    )


def write_result(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if "rows" in payload:
        payload = dict(payload, rows=[dict(r, run_utc=r.get("run_utc", now)) for r in payload["rows"]])
    if path.is_file() and "rows" in payload:  # a run of some models updates only their rows
        old = json.loads(path.read_text())
        new_keys = {_row_key(r) for r in payload["rows"]}
        kept = [
            dict(r, run_utc=r.get("run_utc", old.get("utc")))
            for r in old.get("rows", [])
            if _row_key(r) not in new_keys
        ]
        payload = dict(payload, rows=kept + payload["rows"])
    payload = {"benchmark": name, "utc": now, "argv": sys.argv[1:], "environment": environment(), **payload}
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    print(f"wrote {path}")
    return path
