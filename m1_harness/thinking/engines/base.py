"""The engine contract shared by the transformers and vLLM engines and the scripted test engine."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, cast

from m1_harness.errors import UserError

TOKEN_COUNTS = ("context_tokens", "cached_tokens", "generated_tokens")  # engine work per call (GenResult)


class EngineError(UserError, ValueError):
    """An engine setting that cannot work (unknown engine, unsupported parallelism)."""


def data_parallel_ranks(value) -> int:
    """``data_parallel_size`` as a rank count; 0 or less is an error (it once meant 1 without a word)."""
    dp = 1 if value is None else int(value)
    if dp < 1:
        raise EngineError(f"data_parallel_size={value}: must be at least 1 (engine ranks per server)")
    return dp


@dataclass
class GenRequest:
    """One continuation to generate, greedy unless the engine was built with sampling settings.

    ``stop_token_ids``: generation ends right after one of these ids is produced (it is kept in
    ``GenResult.token_ids``). ``stop_strings``: generation ends when the decoded continuation
    contains one; the returned ids/text are cut before the stop string.
    """

    prompt_ids: list[int]
    max_tokens: int
    stop_token_ids: Sequence[int] = ()
    stop_strings: Sequence[str] = ()
    continued: bool = True  # a later request may continue this one (engines with a prefix cache keep its KV)
    # Sampling only: the call's own random stream. Its tokens are then a function of (context, seed,
    # temperature, top_p) alone, whatever else is batched with it, and a smaller max_tokens gives a cut
    # of the same tokens (the prefix property). None: the engine's shared, once-seeded stream.
    seed: int | None = None
    priority: int = 0  # lower goes first (vLLM priority scheduling); the streaming driver sends new prompts at 1


# Why a generate call ended: a stop id / string fired, or max_tokens (or the context) ran out.
FinishReason = Literal["stop", "length"]


@dataclass
class GenResult:
    token_ids: list[int]
    finish_reason: FinishReason
    stop_reason: int | str | None = None  # the stop id or string that fired, None on length
    text: str = field(default="")
    # What the call cost the engine, 0 when nothing ran (served by the trace cache, max_tokens 0);
    # not part of equality: two results are equal when they say the same tokens.
    context_tokens: int = field(default=0, compare=False)  # prompt ids sent
    cached_tokens: int = field(default=0, compare=False)  # of those, taken from a prefix cache, not prefilled
    generated_tokens: int = field(default=0, compare=False)  # decode steps (> len(token_ids) after a stop-string cut)


class Engine(Protocol):
    """What the budget loop drives. The engines here subclass it, so the optional capabilities below
    keep their defaults where an engine has no such thing; the drivers read them as plain attributes."""

    tokenizer: Any  # a transformers tokenizer
    max_model_len: int
    # How many requests the batched driver takes through all their rounds together; None: all at once
    # (budget.py, BudgetForcer.run). An engine with a small prefix cache (transformers) sets it.
    round_size: int | None = None
    eos_token_ids: list[int] | None = None  # the ids that end a turn; None: the tokenizer's eos_token_id
    streaming: bool = False  # True: submit / poll / cancel (StreamingEngine), driven by scheduler.py
    kv_cache_tokens: int = 0  # what the engine's KV cache holds, in tokens (admission control); 0: unknown
    block_size: int = 1  # KV block size in tokens
    # Admit at most this many requests at once (a server, whose KV cache size is not known here:
    # engines/server.py); 0 means only the KV cache bounds them.
    max_in_flight: int = 0
    model_identity: str | None = None  # what generated the tokens (weights_identity; a server's model cards):
    # the trace cache's key and the trace records' field
    vocab_size: int | None = None  # ids must lie below it (check_result); None: unchecked

    def generate(self, requests: list[GenRequest]) -> list[GenResult]:
        """Generate every request; results in request order."""
        ...


# The optional capabilities: the Engine attributes that have a default (what a wrapper forwards).
CAPABILITIES = tuple(name for name in Engine.__annotations__ if hasattr(Engine, name))


def eos_token_ids(pretrained: str, tokenizer) -> list[int]:
    """The ids that end a turn: the generation config's EOS ids (often several) and the tokenizer's."""
    from transformers import GenerationConfig

    try:
        gen_eos = GenerationConfig.from_pretrained(pretrained).eos_token_id
    except Exception:  # no generation_config.json
        gen_eos = None
    gen_eos = gen_eos if isinstance(gen_eos, list) else [gen_eos]
    return sorted({i for i in [*gen_eos, tokenizer.eos_token_id] if i is not None})


class BadResult(UserError, ValueError):
    """An engine result that breaks the contract below: never used, never stored in the trace cache."""


def check_result(req: GenRequest, res: GenResult, vocab_size: int | None, max_model_len: int | None) -> None:
    """The one check every result passes where it enters (each engine, and the trace cache before it
    stores), so "generated + forced <= thinking_budget" holds whatever a server or engine sends:
    token ids are ints of the vocabulary; at most ``max_tokens`` of them; a ``length`` finish has
    exactly ``max_tokens`` (fewer only where prompt + ids fill ``max_model_len``); a ``stop`` finish
    names a stop of the request, a stop id being the last id; no stop id before the end.
    Raises ``BadResult`` with one sentence saying what is wrong."""
    ids, n, limit = res.token_ids, len(res.token_ids), int(req.max_tokens)
    stops = set(req.stop_token_ids)
    problem = None
    for k, t in enumerate(ids):
        if type(t) is not int or t < 0 or (vocab_size is not None and t >= vocab_size):
            problem = f"id {t!r} at position {k} is not a token id of this model (vocabulary of {vocab_size})"
            break
    else:
        last_is_stop = res.finish_reason == "stop" and isinstance(res.stop_reason, int)
        early = next((k for k, t in enumerate(ids[:-1] if last_is_stop else ids) if t in stops), None)
        fills = max_model_len is not None and len(req.prompt_ids) + n >= int(max_model_len)
        if n > max(0, limit):
            problem = f"{n} ids for max_tokens={limit}"
        elif res.finish_reason == "length" and n != max(0, limit) and not fills:
            problem = f"finish 'length' after {n} ids, but max_tokens={limit}"
        elif res.finish_reason not in ("stop", "length"):
            problem = f"finish_reason={res.finish_reason!r} (expected stop or length)"
        elif res.finish_reason == "stop" and not (
            (last_is_stop and res.stop_reason in stops and n and ids[-1] == res.stop_reason)
            or (isinstance(res.stop_reason, str) and res.stop_reason in req.stop_strings)
        ):
            problem = (
                f"finish 'stop' on {res.stop_reason!r}, which is not the last id and a stop of the request "
                f"(stop ids {sorted(stops)}, stop strings {list(req.stop_strings)})"
            )
        elif early is not None:
            problem = f"stop id {ids[early]} at position {early} of {n}: generation went on past a stop"
    if problem is not None:
        raise BadResult(f"engine result for a prompt of {len(req.prompt_ids)} ids: {problem}")


def model_vocab_size(config, tokenizer) -> int:
    """Ids a model can emit: its (text) config's vocab_size (often padded past the tokenizer), else the tokenizer's."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return max(int(getattr(text, "vocab_size", 0) or 0), len(tokenizer))


def hub_revision(repo_id: str) -> str | None:
    """The commit a Hub model id resolves to in the local Hugging Face cache (what was just loaded)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo_id, "config.json")
    except Exception:  # noqa: BLE001  (not a valid repo id, no cache): unknown
        return None
    parts = Path(found).parts if isinstance(found, str) else ()
    return parts[parts.index("snapshots") + 1] if "snapshots" in parts else None


def weights_fingerprint(folder: Path) -> str:
    """A model folder's config and weight files by name, size and mtime: cheap, and changes with the weights.
    A PEFT adapter folder (``adapter_config.json``) also takes its base model's: transformers loads that
    base under the adapter, so a base checkpoint saved over in place changes the tokens too."""
    h = hashlib.sha256()
    for f in sorted(Path(folder).iterdir()):
        if f.suffix in (".json", ".safetensors", ".bin", ".gguf"):
            st = f.stat()
            h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    base = _adapter_base(Path(folder))
    if base is not None:
        h.update(
            f"base={base}:{weights_fingerprint(Path(base)) if Path(base).is_dir() else hub_revision(base)}".encode()
        )
    return h.hexdigest()[:16]


def _adapter_base(folder: Path) -> str | None:
    """The base model a PEFT adapter folder names (``base_model_name_or_path``); None for a whole model."""
    try:
        base = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8")).get("base_model_name_or_path")
    except (OSError, ValueError, AttributeError):
        return None
    return str(base) if base and Path(base).resolve() != folder.resolve() else None


def weights_identity(engine: str, pretrained: str, dtype: str) -> str | None:
    """An in-process engine's ``model_identity`` (what the trace cache keys a model by, and trace records
    carry): engine, dtype, and the exact weights: a fingerprint of a local folder's config and weight
    files (an adapter's with its base's), or the commit a Hub id resolved to (an id alone would serve a
    model updated on the Hub its old traces). None when a Hub id's commit cannot be found."""
    path = Path(pretrained)
    if path.is_dir():
        base = _adapter_base(path)  # an adapter on a Hub base: that base's commit, as for a Hub id
        if base is not None and not Path(base).is_dir() and hub_revision(base) is None:
            return None
        return "|".join([engine, str(path.resolve()), dtype, weights_fingerprint(path)])
    revision = hub_revision(str(pretrained))
    return None if revision is None else "|".join([engine, str(pretrained), dtype, f"rev={revision}"])


class StreamingEngine(Engine, Protocol):
    """An engine that takes requests one at a time and returns each as soon as it is done, so the
    budget loop can send a request's next round while its KV blocks are still cached (scheduler.py,
    ``StreamDriver``). ``streaming`` True selects that driver."""

    def submit(self, key: object, request: GenRequest) -> None:
        """Queue one request; its result comes back from ``poll`` under ``key``."""
        ...

    def poll(self) -> list[tuple[object, GenResult]]:
        """Run the engine one step (if nothing is ready yet); return the requests finished since the last poll."""
        ...

    def cancel(self) -> None:
        """Drop every request in flight (the driver stopped part-way: an error, an interrupt)."""
        ...


def as_streaming(engine: Engine) -> StreamingEngine:
    """``engine`` as a StreamingEngine, which its ``streaming`` flag promises (the drivers branch on it)."""
    if not engine.streaming:
        raise TypeError(f"{type(engine).__name__} is not a streaming engine (streaming=False): it has no submit/poll")
    return cast(StreamingEngine, engine)
