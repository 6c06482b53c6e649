"""The engine contract shared by the transformers and vLLM engines and the scripted test engine."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, Sequence

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


@dataclass
class GenResult:
    token_ids: list[int]
    finish_reason: Literal["stop", "length"]
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
