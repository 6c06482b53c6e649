"""``m1_budget``: the lm-eval model that thinks under a token budget, forces, then answers.

Thin on purpose: lm-eval requests in, the chat template applied here (once), budget.py drives an
engine (engines/), whole trace strings out. Everything that decides tokens lives in budget.py; this
file only parses and checks arguments, groups requests by decoding settings, writes trace records
and prints a summary. ``MODEL_ARGS`` is the single table of arguments, defaults and meanings
(docs/model_args.md is generated from it: ``python -m m1_harness.docs_gen``); anything else is an
error that lists it.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path

import lm_eval.models  # noqa: F401  (lm-eval's own models first, else they vanish from the registry)
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model
from lm_eval.utils import handle_arg_string

from m1_harness.errors import UserError
from m1_harness.paths import OutputError, cache_dir, ensure_writable_dir
from m1_harness.records import TraceFile, TraceRecord, build_record, new_run_id
from m1_harness.taskfns import BudgetedText
from m1_harness.thinking.budget import BudgetForcer
from m1_harness.thinking.engines import load_engine, resolve_engine_name
from m1_harness.thinking.engines.base import TOKEN_COUNTS, hub_revision
from m1_harness.thinking.markers import PRESETS, detect
from m1_harness.thinking.request import AUTO, BudgetRequest, Trace
from m1_harness.thinking.seeds import sample_seed
from m1_harness.thinking.tracecache import CACHE_FILE, CacheRefused, CachingEngine, TraceCache
from m1_harness.versions import library_versions

log = logging.getLogger(__name__)


class ModelArgError(UserError, ValueError):
    """A model_arg or gen_kwarg m1_budget cannot use; the message lists the valid ones."""


BUDGET = "int|auto"
# name: (type, default, meaning); the type is a Python type or the name of a union (BUDGET, "dict", "int|none")
MODEL_ARGS: dict[str, tuple[type | str, object, str]] = {
    "pretrained": (str, None, "model path or Hugging Face id (required)"),
    "engine": (
        str,
        "auto",
        "vllm, hf, server (a running OpenAI-compatible server: base_url), or auto (vLLM if "
        "installed and a GPU is present, else hf)",
    ),
    "thinking_budget": (
        BUDGET,
        AUTO,
        "most thinking tokens per request (generated + forced); 0 skips "
        "thinking; auto = context length - prompt - answer budget",
    ),
    "forcing": (int, 0, "times to replace an early end of thinking by the forcing string"),
    "forcing_str": (str, "Wait", "the string spliced in when forcing (after a newline unless at whitespace)"),
    "answer_budget": (
        int,
        None,
        "most answer tokens (default: the task's max_gen_toks, else 256); clamped to the context",
    ),
    "markers": (
        str,
        "m1",
        f"thinking format: a preset ({', '.join(PRESETS)}) or auto (chosen from the chat template and special tokens)",
    ),
    "think_start": (str, None, "override: text appended to the chat prompt to open thinking (\\n allowed)"),
    "think_end": (str, None, "override: space-separated markers that end thinking (EOS always does)"),
    "answer_start": (
        str,
        None,
        "override: text that opens the answer (after the preset's separator: a newline; two "
        "for huatuo_o1, none for gpt_oss and magistral)",
    ),
    "budget_cut_prefix": (str, None, "override: text after answer_start when the budget cut thinking"),
    "budget_cut_text": (
        str,
        None,
        "override: a text that itself ends thinking at a budget cut, used instead "
        "of answer_start + budget_cut_prefix (qwen3's own); empty for none",
    ),
    "enable_thinking": (
        bool,
        None,
        "passed to the chat template (hybrid models such as Qwen3); false gives "
        "the template's closed think block, so no thinking",
    ),
    "chat_template_args": (
        "dict",
        None,
        "more chat-template arguments: key=value;key=value or a JSON object (e.g. reasoning_effort=high for gpt-oss)",
    ),
    "dtype": (str, "auto", "weights dtype: auto, bfloat16, float16, float32"),
    "batch_size": ("int|auto", 8, "hf engine batch size (vLLM schedules its own)"),
    "max_batch_size": (int, None, "accepted from lm-eval, unused"),
    "device": (str, None, "hf engine device (default cuda if available, else cpu)"),
    "prefix_cache": (
        bool,
        True,
        "hf engine: keep each row's KV cache between rounds, so forcing and answer "
        "rounds prefill only their new ids (about one batch's KV cache more memory)",
    ),
    "seed": (
        "int|none",
        42,
        "sampling seed S: sample j of doc d of task t is seeded by a hash of (S, t, d, j) "
        "and each of its generate calls by a hash of that and the call's context length "
        "(docs/sampling.md); none = unseeded (one shared stream; no trace cache). Greedy ignores it",
    ),
    "samples": (
        int,
        1,
        "traces per request (K >= 1; K > 1 needs sampling: gen_kwargs do_sample=true and a "
        "temperature > 0): lm-eval scores sample 0, every sample gets a trace record (m1-harness sweep "
        "--samples reports maj@k/pass@k)",
    ),
    "max_model_len": (int, None, "context length (default: the model's)"),
    "tensor_parallel_size": (int, 1, "vLLM tensor parallel GPUs"),
    "data_parallel_size": (
        int,
        1,
        "vLLM data parallel ranks: engine=vllm starts vLLM's own data-parallel server "
        "(one engine per GPU group) and drives it; engine=server: the server's ranks, each request "
        "pinned to one",
    ),
    "gpu_memory_utilization": (float, 0.9, "vLLM share of GPU memory"),
    "enforce_eager": (bool, False, "vLLM: skip CUDA graphs / torch.compile (faster start)"),
    "streaming": (
        bool,
        True,
        "vLLM and server engines: each request starts its next round (forcing, answer) as "
        "soon as its last one ends, while its KV blocks are cached; false: rounds wait for every request",
    ),
    "base_url": (
        str,
        None,
        "server engine: the server's OpenAI API root, e.g. http://127.0.0.1:8000/v1; "
        "several replicas separated by commas or spaces",
    ),
    "served_model": (
        str,
        None,
        "server engine: the served model name (default: the one named pretrained, or the only one served)",
    ),
    "api_key_env": (str, None, "server engine: name of the environment variable holding the API key"),
    "max_concurrency": (
        int,
        16,
        "server engine (and vLLM with data_parallel_size > 1): requests in flight per replica or rank",
    ),
    "timeout": (float, 600.0, "server engine: seconds to wait for one response before retrying"),
    "max_retries": (int, 6, "server engine: retries per request (429, 5xx, timeouts, dropped connections)"),
    "server_api": (str, "vllm", "server engine: the server's completion dialect, vllm or sglang"),
    "trust_remote_code": (bool, False, "passed to transformers / vLLM"),
    "trace_path": (
        str,
        None,
        "JSONL file or folder for trace records (default: m1_traces/ beside --output_path, else in the current folder)",
    ),
    "cache": (
        str,
        "auto",
        "trace cache: on, off, or auto (on for greedy decoding and seeded sampling, off for "
        "unseeded sampling, seed=none)",
    ),
    "cache_dir": (str, None, "trace cache folder (default: $M1_HARNESS_CACHE/traces)"),
}
DTYPES = ("auto", "bfloat16", "float16", "float32")
RECONFIGURABLE = ("thinking_budget", "forcing", "forcing_str", "answer_budget", "trace_path", "samples")
HF_ONLY = {"batch_size", "device", "prefix_cache"}
VLLM_ONLY = {"tensor_parallel_size", "data_parallel_size", "gpu_memory_utilization", "enforce_eager", "streaming"}
SERVER_ONLY = {
    "base_url",
    "served_model",
    "api_key_env",
    "max_concurrency",
    "timeout",
    "max_retries",
    "streaming",
    "data_parallel_size",
    "server_api",
}
OTHER_ENGINES_ARGS = {
    "hf": VLLM_ONLY | SERVER_ONLY,
    "vllm": (HF_ONLY | SERVER_ONLY) - VLLM_ONLY,
    "server": (HF_ONLY | VLLM_ONLY) - SERVER_ONLY,
}
# s1's gen_kwargs names (and ours) accepted per request; values override model_args.
GEN_ALIASES = {
    "max_tokens_thinking": "thinking_budget",
    "thinking_n_ignore": "forcing",
    "thinking_n_ignore_str": "forcing_str",
    "thinking_budget": "thinking_budget",
    "forcing": "forcing",
    "forcing_str": "forcing_str",
    "answer_budget": "answer_budget",
}
GEN_KWARGS = {"until", "max_gen_toks", "do_sample", "temperature", "top_p", *GEN_ALIASES}


def _usage() -> str:
    return "valid model_args:\n" + "\n".join(
        f"  {k} ({t if isinstance(t, str) else t.__name__}, default {d!r}): {m}" for k, (t, d, m) in MODEL_ARGS.items()
    )


# What each argument type accepts, in the words of the error for a value it refuses.
_VALID = {
    int: "a whole number >= 0",
    float: "a number",
    str: "a text",
    bool: "true or false",
    "int|auto": "a whole number >= 0, or auto",
    "int|none": "a whole number >= 0, or none",
}


def _check(name: str, value, kind):
    """Coerce ``value`` to ``kind`` or raise a ModelArgError that says what ``kind`` accepts."""
    asked = kind
    try:
        if value is None:
            return None
        if kind == "dict":
            return _template_args(value)
        if kind == "int|none":
            if isinstance(value, str) and value.lower() == "none":
                return None
            kind = int
        if kind in (BUDGET, "int|auto"):
            if isinstance(value, str) and value.lower() == AUTO:
                return AUTO
            kind = int
        if kind is bool:
            if isinstance(value, str) and value.lower() in ("true", "false", "on", "off", "1", "0"):
                return value.lower() in ("true", "on", "1")
            if isinstance(value, bool):
                return value
            raise ValueError
        if kind is int and (isinstance(value, bool) or (isinstance(value, float) and not value.is_integer())):
            raise ValueError
        out = kind(value)
        if kind is int and out < 0:
            raise ValueError
        return out
    except (TypeError, ValueError):  # json.JSONDecodeError is a ValueError
        if kind == "dict":
            raise ModelArgError(
                f"m1_budget: {name}={value!r} is not key=value;key=value or a JSON object "
                "(e.g. enable_thinking=false;reasoning_effort=high)"
            ) from None
        raise ModelArgError(f"m1_budget: {name}={value!r} is not valid: give {_VALID.get(asked, asked)}") from None


def _template_args(value) -> dict:
    """``key=value;key=value`` (values typed as lm-eval types model_args), a JSON object, or a dict."""
    if isinstance(value, dict):
        return dict(value)
    text = str(value).strip()
    if text.startswith("{"):
        out = json.loads(text)
        if isinstance(out, dict):
            return out
        raise ValueError
    out = {}
    for item in filter(None, (part.strip() for part in text.split(";"))):
        key, eq, val = item.partition("=")
        if not eq or not key.strip():
            raise ValueError
        out[key.strip()] = handle_arg_string(val)
    return out


def _check_samples(k: int) -> None:
    if k < 1:
        raise ModelArgError(f"m1_budget: samples={k}: give at least 1 trace per request")


def _unescape(s: str | None) -> str | None:
    return None if s is None else s.replace("\\n", "\n").replace("\\t", "\t")


def _lm_eval_output_dir() -> Path | None:
    """The folder of lm-eval's --output_path when this process was started with one."""
    argv = sys.argv
    for i, a in enumerate(argv):
        value = (
            argv[i + 1]
            if a in ("--output_path", "-o") and i + 1 < len(argv)
            else (a.split("=", 1)[1] if a.startswith("--output_path=") else None)
        )
        if value:
            out = Path(value)
            return out.parent if out.suffix == ".json" else out
    return None


def _default_trace_dir() -> Path:
    """Beside lm-eval's --output_path when this process was started with one, else ./m1_traces."""
    return (_lm_eval_output_dir() or Path.cwd()) / "m1_traces"


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _check_hub_id_offline(pretrained: str) -> None:
    """With HF_HUB_OFFLINE set, a Hub id whose files are not in the local cache cannot load: say so now,
    instead of transformers' chained traceback after its retries."""
    if not _offline() or Path(pretrained).expanduser().is_dir() or hub_revision(pretrained) is not None:
        return
    raise ModelArgError(
        f"m1_budget: pretrained={pretrained!r} is a Hugging Face id that is not in the local cache, "
        "and HF_HUB_OFFLINE is set, so it cannot be downloaded: download it once online "
        f"(`hf download {pretrained}`), or pass the folder that holds its config.json"
    )


def _check_pretrained(pretrained: str) -> None:
    """A path that names no folder is an error saying so, before any load (transformers would call it a bad
    Hub repo id). Hub ids (``name`` or ``org/name``) that are not local folders go on to the Hub."""
    path = Path(pretrained).expanduser()
    looks_like_path = (
        path.is_absolute() or pretrained.startswith(("~", ".")) or pretrained.endswith("/") or pretrained.count("/") > 1
    )
    if looks_like_path and not path.is_dir():
        what = "it is a file, not a model directory" if path.is_file() else "no model directory exists at that path"
        raise ModelArgError(
            f"m1_budget: pretrained={pretrained!r}: {what} ({path.resolve()}). Pass the folder that "
            "holds the model's config.json, or a Hugging Face id such as org/name."
        )


@register_model("m1_budget")
class M1BudgetLM(LM):
    """Thinking budgets and budget forcing for any chat model, on vLLM or transformers."""

    def __init__(self, **kwargs):
        super().__init__()
        unknown = sorted(set(kwargs) - set(MODEL_ARGS))
        if unknown:
            raise ModelArgError(f"m1_budget: unknown model_args {unknown}.\n{_usage()}")
        if isinstance(kwargs.get("cache"), bool):  # lm-eval turns cache=true/false into booleans
            kwargs["cache"] = "on" if kwargs["cache"] else "off"
        a = {k: _check(k, kwargs.get(k, d), t) for k, (t, d, _) in MODEL_ARGS.items()}
        if not a["pretrained"]:
            raise ModelArgError(f"m1_budget: pretrained=PATH_OR_HUB_ID is required.\n{_usage()}")
        _check_pretrained(a["pretrained"])
        if a["markers"] != AUTO and a["markers"] not in PRESETS:
            raise ModelArgError(f"m1_budget: markers={a['markers']!r}; presets: {', '.join(PRESETS)}, or auto")
        if a["dtype"] not in DTYPES:
            raise ModelArgError(f"m1_budget: dtype={a['dtype']!r}; choose one of {', '.join(DTYPES)}")
        _check_samples(a["samples"])
        if a["cache"] not in ("on", "off", "auto"):
            raise ModelArgError(f"m1_budget: cache={a['cache']!r}; use on, off or auto")
        self.args = a
        self.template_args = dict(a["chat_template_args"] or {})
        if a["enable_thinking"] is not None:
            self.template_args["enable_thinking"] = a["enable_thinking"]
        self._check_outputs()
        self.engine_name = resolve_engine_name(a["engine"])
        if self.engine_name != "server":  # a server engine's pretrained names only its tokenizer's files
            _check_hub_id_offline(a["pretrained"])
        owned_server = self.engine_name == "vllm" and a["data_parallel_size"] > 1  # engines/owned.py
        ignored = sorted(
            k
            for k in OTHER_ENGINES_ARGS[self.engine_name]
            if k in kwargs and not (owned_server and k == "max_concurrency")
        )
        if ignored:
            log.warning("m1_budget: %s do not apply to the %s engine and are ignored", ignored, self.engine_name)
        common = dict(
            pretrained=a["pretrained"],
            dtype=a["dtype"],
            seed=a["seed"],
            max_model_len=a["max_model_len"],
            trust_remote_code=a["trust_remote_code"],
        )
        if self.engine_name == "hf":
            if str(a["device"] or "").startswith("cuda"):
                import torch

                if not torch.cuda.is_available():  # lm-eval's CLI passes device=cuda:0 by default
                    log.warning("m1_budget: device=%s but CUDA is not available; using cpu", a["device"])
                    a["device"] = "cpu"
            bs = 16 if a["batch_size"] == AUTO else a["batch_size"]
            # progress=False: the budget loop's bar counts requests; the engine's would count calls (rounds, probes)
            self.engine = load_engine(
                "hf", batch_size=bs, device=a["device"], prefix_cache=a["prefix_cache"], progress=False, **common
            )
        elif self.engine_name == "server":
            if not a["base_url"]:
                raise ModelArgError(
                    "m1_budget: engine=server needs base_url=http://HOST:PORT/v1 (several: separated by "
                    "commas or spaces)"
                )
            self.engine = load_engine("server", **common, **{k: a[k] for k in SERVER_ONLY})
        else:
            extra = {"max_concurrency": a["max_concurrency"]} if owned_server else {"progress": False}
            self.engine = load_engine("vllm", **common, **{k: a[k] for k in VLLM_ONLY}, **extra)
        self.tokenizer = self.engine.tokenizer
        self.markers_name = a["markers"]
        if self.markers_name == AUTO:
            self.markers_name, why = detect(self.tokenizer, a["pretrained"])
            print(f"m1_budget: markers=auto chose {self.markers_name}: {why}", file=sys.stderr)
        self.markers = PRESETS[self.markers_name].with_overrides(
            think_start=_unescape(a["think_start"]),
            think_end=tuple(_unescape(a["think_end"]).split()) if a["think_end"] else None,
            answer_start=_unescape(a["answer_start"]),
            budget_cut_prefix=_unescape(a["budget_cut_prefix"]),
            budget_cut_text=_unescape(a["budget_cut_text"]),
        )
        self._closed_warned = False
        self._templated: set[str] = set()
        self._cache = None
        identity = self.engine.model_identity if a["cache"] != "off" else None
        if a["cache"] != "off" and identity is None:
            if a["cache"] == "on":
                raise CacheRefused(
                    f"m1_budget: cache=on, but the Hub commit of {a['pretrained']!r} cannot be found in the "
                    "local Hugging Face cache, so cached traces could belong to other weights"
                )
            log.warning(
                "m1_budget: the Hub commit of %s cannot be found in the local Hugging Face cache: the trace "
                "cache is off for this run (traces keyed by the id alone could belong to other weights)",
                a["pretrained"],
            )
        elif a["cache"] != "off":
            root = Path(a["cache_dir"]) if a["cache_dir"] else cache_dir("traces")
            self._cache = TraceCache(root / CACHE_FILE, identity)
        self.traces: list[TraceRecord] = []  # records of the last generate_until call
        self.probes: list[tuple[int, int]] = []  # set by reconfigure (m1-harness sweep)
        self.decodings: list[tuple[float, float]] = []  # (temperature, top_p) of the last generate_until call

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None):
        """lm-eval passes --batch_size / --device beside the model_args; a key given in both was a bare
        TypeError ("got multiple values"). What the user wrote in --model_args wins."""
        from lm_eval.utils import simple_parse_args_string

        return cls.create_from_arg_obj(simple_parse_args_string(arg_string), additional_config)

    @classmethod
    def create_from_arg_obj(cls, arg_dict: dict, additional_config: dict | None = None):
        extra = {k: v for k, v in (additional_config or {}).items() if v is not None and k not in arg_dict}
        return cls(**arg_dict, **extra)

    def get_model_info(self) -> dict:
        """Recorded in the results file's ``config`` by lm-eval: library versions, the engine and its settings."""
        other = OTHER_ENGINES_ARGS[self.engine_name]
        settings = {k: v for k, v in self.args.items() if k not in (*other, "engine", "max_batch_size")}
        settings.update(markers=self.markers_name, max_model_len=self.engine.max_model_len)  # as resolved
        temps, top_ps = [t for t, _ in self.decodings], [p for _, p in self.decodings]  # from gen_kwargs
        settings.update(
            temperature=temps[0] if len(temps) == 1 else temps or None,
            top_p=top_ps[0] if len(top_ps) == 1 else top_ps or None,
        )
        if self.engine_name == "hf":
            settings.update(device=str(self.engine.device), batch_size=self.engine.batch_size)
        return {"m1_budget": {"engine": self.engine_name, "settings": settings, "versions": library_versions()}}

    # -- lm-eval chat-template support: lm-eval may template the prompt itself ------------------
    @property
    def tokenizer_name(self) -> str:
        return str(self.args["pretrained"]).replace("/", "__")

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        return getattr(self.tokenizer, "chat_template", None) or ""

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        text = self.tokenizer.apply_chat_template(
            chat_history, tokenize=False, add_generation_prompt=add_generation_prompt, **self.template_args
        )
        self._templated.add(text)  # generate_until must not template this string a second time
        return text

    def _prompt_ids(self, context: str) -> tuple[list[int], bool]:
        """The chat prompt's ids without any think marker the template wrote itself (the budget loop
        opens thinking once), and whether the template already closed thinking (enable_thinking=false)."""
        if context not in self._templated:
            if getattr(self.tokenizer, "chat_template", None):
                context = self.tokenizer.apply_chat_template(
                    [{"role": "user", "content": context}],
                    tokenize=False,
                    add_generation_prompt=True,
                    **self.template_args,
                )
            else:
                log.warning("m1_budget: %s has no chat template; the prompt is used as is", self.args["pretrained"])
        context, state = self.markers.template_state(context)
        if state == "closed" and not self._closed_warned:
            self._closed_warned = True
            log.warning(
                "m1_budget: the chat template closed thinking itself (%s): no thinking, thinking_budget=0",
                self.template_args or "its own choice",
            )
        return list(self.tokenizer.encode(context, add_special_tokens=False)), state == "closed"

    # -- requests -------------------------------------------------------------------------------
    def loglikelihood(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError(
            "m1_budget is generative (it thinks, then answers): loglikelihood / multiple_choice tasks are not "
            "supported. Use a generate_until task such as medqa, or lm-eval's hf / vllm models."
        )

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        self.loglikelihood(requests)

    def reconfigure(self, probes=None, **args) -> None:
        """Change the settings that need no reload (budget, forcing, answer budget, trace file), so a
        sweep runs every setting on one loaded model. ``probes``: the sweep's other (budget, forcing)
        settings, answered in flight by this run into the trace cache (budget.py, ``BudgetForcer.run``);
        None or empty for none."""
        self.probes = [(int(b), int(f)) for b, f in (probes or ())]
        bad = sorted(set(args) - set(RECONFIGURABLE))
        if bad:
            raise ModelArgError(
                f"m1_budget: {bad} cannot change without reloading the model; "
                f"reconfigure takes {', '.join(RECONFIGURABLE)}"
            )
        for k, v in args.items():
            self.args[k] = _check(k, v, MODEL_ARGS[k][0])
        _check_samples(self.args["samples"])
        if "trace_path" in args:
            self._check_outputs()

    def _check_outputs(self) -> None:
        """Every place this run writes, proven writable before the model loads or anything is generated
        (lm-eval writes its results only after the last request: a bad path found then loses the run)."""
        a = self.args
        trace = Path(a["trace_path"]) if a["trace_path"] else _default_trace_dir()
        ensure_writable_dir(trace.parent if trace.suffix == ".jsonl" else trace, "trace_path")
        if trace.suffix == ".jsonl" and trace.exists() and not os.access(trace, os.W_OK):
            raise OutputError(f"trace_path={str(trace)!r} cannot be written (permission denied): choose another file")
        output = _lm_eval_output_dir()
        if output is not None:
            ensure_writable_dir(output, "--output_path")
        if a["cache"] != "off":
            ensure_writable_dir(Path(a["cache_dir"]) if a["cache_dir"] else cache_dir("traces"), "cache_dir")

    def _settings(self, gen_kwargs: dict) -> tuple[dict, tuple]:
        gen_kwargs = dict(gen_kwargs or {})
        unknown = sorted(set(gen_kwargs) - GEN_KWARGS)
        if unknown:
            raise ModelArgError(f"m1_budget: unknown gen_kwargs {unknown}; valid: {sorted(GEN_KWARGS)}")
        a = self.args
        s = {"thinking_budget": a["thinking_budget"], "forcing": a["forcing"], "forcing_str": a["forcing_str"]}
        for k, v in gen_kwargs.items():
            if k in GEN_ALIASES and v is not None:
                name = GEN_ALIASES[k]
                s[name] = _check(k, v, MODEL_ARGS[name][0])
        until = gen_kwargs.get("until") or []
        s["until"] = [until] if isinstance(until, str) else list(until)
        if s.get("answer_budget") is None:
            s["answer_budget"] = (
                a["answer_budget"] if a["answer_budget"] is not None else int(gen_kwargs.get("max_gen_toks") or 256)
            )
        temp = float(gen_kwargs.get("temperature") or 0.0)
        do_sample = gen_kwargs.get("do_sample")
        sampling = do_sample is True or (do_sample is None and temp > 0)
        decoding = (temp if temp > 0 else 1.0, float(gen_kwargs.get("top_p") or 1.0)) if sampling else (0.0, 1.0)
        return s, (decoding, _unescape(s["forcing_str"]))

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """K = ``samples`` traces per request, all through one driver run (the samples of a prompt share its
        prefix cache); lm-eval gets sample 0's text, every sample gets a trace record."""
        k_samples = self.args["samples"]
        groups: dict[tuple, list[int]] = {}
        settings = []
        for i, req in enumerate(requests):
            s, group = self._settings(req.args[1])
            settings.append(s)
            groups.setdefault(group, []).append(i)
        if k_samples > 1 and any(temp <= 0 for (temp, _), _ in groups):
            raise ModelArgError(
                f"m1_budget: samples={k_samples} needs sampling: under greedy decoding (do_sample=false or "
                f"temperature 0) the {k_samples} samples would be one trace {k_samples} times. Pass do_sample=true and "
                "a temperature > 0 (lm_eval --gen_kwargs do_sample=true,temperature=0.6,top_p=0.95; the m1 tasks set "
                "do_sample=false), or samples=1."
            )
        out: list[str] = [""] * len(requests)
        self.traces = [None] * (len(requests) * k_samples)  # type: ignore[list-item]  # request i, sample j: i*K + j
        self.decodings = sorted({decoding for decoding, _ in groups})
        self.trace_file = self._trace_file()
        self.run_id = new_run_id()
        with TraceFile(self.trace_file, self.run_id) as records:
            for ((temp, top_p), forcing_str), idx in groups.items():
                engine = self._engine_for(temp, top_p)
                forcer = BudgetForcer(engine, self.markers, forcing_str)
                breqs, seeds = [], []
                for i in idx:
                    ids, closed = self._prompt_ids(requests[i].args[0])
                    s = settings[i]
                    for j in range(k_samples):
                        seed = self._sample_seed(requests[i], j, ids) if temp > 0 else None
                        seeds.append(seed)
                        breqs.append(
                            BudgetRequest(
                                ids,
                                0 if closed else s["thinking_budget"],
                                0 if closed else s["forcing"],
                                s["answer_budget"],
                                s["until"],
                                seed=seed,
                            )
                        )
                probes = self.probes if isinstance(engine, CachingEngine) else []
                if self.probes and not probes:
                    log.warning(
                        "m1_budget: sweep probes need the trace cache (greedy decoding or seeded sampling, "
                        "cache on); not probing"
                    )

                def done(n: int, trace, idx=idx, seeds=seeds, temp=temp, top_p=top_p, forcing_str=forcing_str) -> None:
                    i, j = idx[n // k_samples], n % k_samples
                    if j == 0:  # the cut flag rides on the text to the task's metrics (taskfns.BudgetedText)
                        out[i] = BudgetedText(trace.text, trace.hit_budget)
                        self.cache_hook.add_partial("generate_until", requests[i].args, out[i])
                    rec = self._record(requests[i], settings[i], trace, forcing_str, temp, top_p, j, seeds[n])
                    self.traces[i * k_samples + j] = rec
                    records.append(rec)

                traces = forcer.run(breqs, progress=not disable_tqdm, on_done=done, probes=probes)
                for n, trace in enumerate(traces):  # n = position in breqs: request idx[n // K], sample n % K
                    i, j = idx[n // k_samples], n % k_samples
                    self.traces[i * k_samples + j]["wall_time"] = trace.wall_time  # amortised: known once the group ran
            records.finish(self.traces)
        self._summarise()
        return out

    def _sample_seed(self, req, j: int, prompt_ids: list[int]) -> int | None:
        """Sample j's seed (seeds.sample_seed); None under seed=none (unseeded sampling)."""
        if self.args["seed"] is None:
            return None
        return sample_seed(
            self.args["seed"], getattr(req, "task_name", None), getattr(req, "doc_id", None), j, prompt_ids
        )

    def _record(
        self,
        req,
        s: dict,
        trace: Trace,
        forcing_str: str,
        temperature: float,
        top_p: float,
        sample: int,
        sample_seed: int | None,
    ) -> TraceRecord:
        """Request ``req``'s sample ``sample`` as a trace record (records.py), its item identity from lm-eval's doc."""
        return build_record(
            trace,
            run_id=self.run_id,
            model=self.args["pretrained"],
            task=getattr(req, "task_name", None),
            doc_id=getattr(req, "doc_id", None),
            doc=getattr(req, "doc", None),
            sample=sample,
            sample_seed=sample_seed,
            requested_thinking_budget=s["thinking_budget"],
            forcing=s["forcing"],
            forcing_str=forcing_str,
            temperature=temperature,
            top_p=top_p,
            markers=self.markers_name,
            requested_answer_budget=s["answer_budget"],
        )

    def _trace_file(self) -> Path:
        path = Path(self.args["trace_path"]) if self.args["trace_path"] else _default_trace_dir()
        if path.suffix != ".jsonl":
            path = path / f"traces_{time.strftime('%Y%m%dT%H%M%S')}_{os.getpid()}.jsonl"
        return path

    def _engine_for(self, temp: float, top_p: float):
        self.engine.set_sampling(temp, top_p)
        if self._cache is None:
            return self.engine
        if temp > 0 and self.args["seed"] is None:
            if self.args["cache"] == "on":
                raise CacheRefused(
                    f"m1_budget: cache=on with seed=none (unseeded sampling, temperature={temp}): "
                    "the trace cache holds sampled traces only when each has its own seed. Pass "
                    "seed=S, or cache=off (or cache=auto) to sample unseeded."
                )
            log.warning(
                "m1_budget: unseeded sampling (seed=none, temperature=%s): the trace cache is off for these requests",
                temp,
            )
            return self.engine
        check_seeds = getattr(self.engine, "seeded_sampling_problem", None)  # a server (engines/server.py)
        problem = check_seeds() if temp > 0 and check_seeds is not None else None
        if problem:  # its seeds do not repeat: cut traces and probes would not be the run's
            if self.args["cache"] == "on":
                raise CacheRefused(f"m1_budget: cache=on with seeded sampling (temperature={temp}): {problem}")
            log.warning("m1_budget: %s. The trace cache and sweep probes are off for these requests", problem)
            return self.engine
        chunk = 4 * self.engine.batch_size if self.engine_name == "hf" else 256
        decoding = {"temperature": temp, "top_p": top_p} if temp > 0 else None  # greedy: the cache's own
        return CachingEngine(self.engine, self._cache, chunk_size=chunk, decoding=decoding)

    def _summarise(self) -> None:
        """Print the run summary, and say once, with counts, where the context overrode a budget."""
        recs = self.traces
        n = max(1, len(recs))
        clamped = [r for r in recs if r["budget_clamped"]]
        too_long = [r for r in recs if r["prompt_too_long"]]
        k_samples = self.args["samples"]
        summary = {
            "requests": len(recs) // k_samples,
            "samples": k_samples,  # traces per request; the means below are over all of them
            "mean_thinking_tokens": round(sum(r["thinking_tokens"] for r in recs) / n, 1),
            "hit_budget_share": round(sum(r["hit_budget"] for r in recs) / n, 3),
            "mean_forcing_rounds": round(sum(r["forcing_rounds"] for r in recs) / n, 2),
            "mean_answer_tokens": round(sum(r["answer_tokens"] for r in recs) / n, 1),
            "budget_clamped": len(clamped),
            "prompt_too_long": len(too_long),
            # engine work, summed over every generate call of every request, its sweep probes included
            # (trace-cache hits cost 0)
            **{k: sum(sum(r["round_tokens"][k]) + r["probe_tokens"][k] for r in recs) for k in TOKEN_COUNTS},
        }
        if self._cache is not None:
            summary.update(
                cache_hits=self._cache.hits,
                cache_misses=self._cache.misses,
                cache_hits_other_versions=self._cache.other_version_hits,
            )
            note = self._cache.version_note()
            if note:
                log.warning("m1_budget: %s", note)
        limit = self.engine.max_model_len
        if clamped:
            asked = sorted({r["requested_thinking_budget"] for r in clamped})
            ran = [r["thinking_budget"] for r in clamped]
            log.warning(
                "m1_budget: %d of %d requests ran with a smaller thinking budget than asked (asked %s, ran %d-%d): "
                "prompt + answer budget leave no more room in max_model_len=%d. Trace records and sweep tables carry "
                "the effective budget; raise max_model_len or lower answer_budget to run what you asked.",
                len(clamped),
                len(recs),
                ", ".join(map(str, asked)),
                min(ran),
                max(ran),
                limit,
            )
        if too_long:
            log.warning(
                "m1_budget: %d of %d prompts leave no room for an answer in max_model_len=%d: they got no "
                "thinking and an empty answer, scored as wrong (trace records: prompt_too_long).",
                len(too_long),
                len(recs),
                limit,
            )
        if hasattr(self.engine, "run_summary"):  # the server engine: replicas, and what moved between them
            summary["server"] = self.engine.run_summary()
        if self._cache is not None:  # a trace-cache hit costs no engine work: context_tokens 0 in every round
            summary["served_from_cache"] = sum(
                not (sum(r["round_tokens"]["context_tokens"]) + r["probe_tokens"]["context_tokens"]) for r in recs
            )
        self.summary = summary
        print(f"m1_budget: {json.dumps(summary)}; trace records in {self.trace_file}", file=sys.stderr)
        if self._cache is not None:
            what = "requests" if k_samples == 1 else "sampled traces"
            print(
                f"m1_budget: {summary['served_from_cache']} of {len(recs)} {what} served from the trace cache "
                f"{self._cache.path} (`m1-harness cache info` shows it, `m1-harness cache clear` empties it)",
                file=sys.stderr,
            )
        if k_samples > 1:
            print(
                f"m1_budget: lm-eval's table scores sample 0 of {k_samples}; maj@k / pass@k / mean@k: "
                "m1-harness sweep --samples / report",
                file=sys.stderr,
            )
