"""Thinking budgets and budget forcing, engine-agnostic and batched.

One request goes through three phases (docs/budget_forcing.md):

1. Think: generate from ``prompt + think_start`` up to what is left of the request's thinking
   budget, stopping only on the think-end markers and EOS (as token ids where a marker is one token,
   because vLLM never matches special tokens as stop strings). Task stop strings play no part here.
2. Force: if the model ended its thinking and forcing rounds remain, the end-marker token is dropped
   (it is never added to the thinking ids), a newline is spliced in unless the text already ends in
   whitespace, then the forcing string's ids ("Wait"); back to 1 with the rest of the budget.
3. Answer: ``markers.answer_prefix(cut)`` (``"\\n" + answer_start``; plus ``budget_cut_prefix``,
   "Final Answer:", or instead the family's own budget-cut text, only when the budget cut the
   thinking) and generate up to the answer budget, clamped to the context, stopping at the task's
   stop strings and EOS.

Each request is a small state machine (``RequestLoop``): it says which generate call it needs next
and takes that call's result; every think / force / answer decision is made there. Two drivers carry
the calls to an engine, and only they schedule:

- batched (``engine.generate``): every round sends all still-thinking requests of a group together,
  then one answer call for the group (a group is all requests, or ``engine.round_size`` of them for
  an engine whose prefix cache is small: transformers);
- streaming (an engine with ``streaming = True``, vLLM: ``submit`` / ``poll``): each request moves to
  its next round the moment its previous one ends, while its KV blocks are still cached; continuing
  rounds go before new prompts, and new requests are admitted while what the admitted ones hold and
  are expected to grow fits the KV cache (scheduler.py, the one home of that scheduling).

Every budget is counted per request in token ids across rounds: ``generated + forced ==
len(thinking_ids) <= thinking_budget``, always.

Forced tokens that do not fit: forcing is applied only when the forced ids leave room for at least
one generated token (``len(forced) + 1 <= remaining``). Otherwise the thinking ends where the model
ended it (no "Final Answer:", ``hit_budget`` stays False) and ``forcing_skipped`` records why fewer
rounds were forced than asked. So forcing is applied exactly as many times as the budget allows.

``thinking_budget=0`` skips thinking: the answer prefix follows the think marker directly and no
"Final Answer:" is added (nothing was cut). ``"auto"`` gives each request
``max_model_len - prompt - answer prefix - answer_budget``.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass, field, fields

from tqdm.auto import tqdm

from m1_harness.thinking.engines.base import Engine, GenRequest, GenResult
from m1_harness.thinking.markers import Markers
from m1_harness.thinking.seeds import call_seed

AUTO = "auto"
TOKEN_COUNTS = ("context_tokens", "cached_tokens", "generated_tokens")  # engine work per call (GenResult)


@dataclass
class BudgetRequest:
    """One request: token ids of the rendered chat prompt WITHOUT the think marker."""

    prompt_ids: list[int]
    thinking_budget: int | str = AUTO  # tokens, or "auto"
    forcing: int = 0  # how many times to force thinking to continue
    answer_budget: int = 256
    until: list[str] = field(default_factory=list)  # task stop strings: answer phase only
    seed: int | None = None  # sampling: this sample's seed; each call gets seeds.call_seed(seed, context length)


@dataclass
class Trace:
    """What happened to one request; ``text`` is what lm-eval receives."""

    prompt_ids: list[int]  # chat prompt + think_start
    thinking_budget: int  # the effective budget (auto resolved, clamped to the context)
    thinking_ids: list[int] = field(default_factory=list)  # generated and forced, end markers dropped
    generated_tokens: int = 0
    forced_tokens: int = 0
    forced_positions: list[int] = field(default_factory=list)  # index in thinking_ids of each splice
    forced_counts: list[int] = field(default_factory=list)  # ids spliced at each position
    rounds: int = 0  # thinking generate calls
    finish_reasons: list[str] = field(default_factory=list)  # per thinking round
    stop_reasons: list = field(default_factory=list)  # per thinking round: id, string or None
    hit_budget: bool = False  # the budget, not the model, ended thinking
    forcing_skipped: bool = False  # a forcing round was due but did not fit in the budget
    answer_prefix_ids: list[int] = field(default_factory=list)
    answer_budget: int = 0  # effective (clamped)
    answer_ids: list[int] = field(default_factory=list)
    answer_finish_reason: str = ""
    answer_stop_reason: int | str | None = None
    text: str = ""  # think_start + thinking + answer prefix + answer
    # Character offsets in ``text`` (for viewers that mark cuts and splices without a tokenizer), from
    # the lengths of decoded id prefixes: a character split across tokens may shift one by a character.
    thinking_span: list[int] = field(default_factory=list)  # [start, end) of the thinking
    forced_spans: list[list[int]] = field(default_factory=list)  # [start, end) of each forced splice
    wall_time: float = 0.0  # seconds, amortised: the run's (group's) wall time / its requests
    # Engine work per generate call (thinking rounds, then the answer): ids sent, ids of those taken
    # from a prefix cache, decode steps. All 0 for a call the trace cache served. (Named apart from
    # ``generated_tokens``, the generated thinking ids, which predates them.)
    round_tokens: dict = field(default_factory=lambda: {k: [] for k in TOKEN_COUNTS})
    probe_tokens: dict = field(default_factory=lambda: dict.fromkeys(TOKEN_COUNTS, 0))  # totals of its sweep probes

    @property
    def forcing_rounds(self) -> int:
        return len(self.forced_positions)

    @property
    def thinking_tokens(self) -> int:
        return len(self.thinking_ids)

    def record(self) -> dict:
        """A JSON-able summary without the (long) id lists, for trace files."""
        skip = {"prompt_ids", "thinking_ids", "answer_prefix_ids", "answer_ids"}  # asdict would deep-copy them
        d = {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self) if f.name not in skip}
        d.update(
            prompt_tokens=len(self.prompt_ids),
            thinking_tokens=self.thinking_tokens,
            answer_tokens=len(self.answer_ids),
            forcing_rounds=self.forcing_rounds,
        )
        return d


def _encode(tok, text: str) -> list[int]:
    return list(tok.encode(text, add_special_tokens=False)) if text else []


class RequestLoop:
    """One request's think / force / answer loop as a state machine: ``call`` is the generate call it
    needs next (None once ``done``), ``feed`` applies that call's result. Drivers only carry calls."""

    def __init__(self, forcer: "BudgetForcer", req: BudgetRequest):
        self.forcer, self.req = forcer, req
        prompt = list(req.prompt_ids) + forcer.think_start_ids
        self.trace = Trace(prompt_ids=prompt, thinking_budget=forcer.thinking_budget_for(req, len(prompt)))
        self.forcing_left = req.forcing
        self.call: GenRequest | None = None
        self.thinking = self.trace.thinking_budget > 0
        if self.thinking:
            self._think_call()
        else:
            self._answer_call()

    @property
    def done(self) -> bool:
        return self.call is None

    def _think_call(self) -> None:
        t, f = self.trace, self.forcer
        context = t.prompt_ids + t.thinking_ids
        self.call = GenRequest(context, t.thinking_budget - len(t.thinking_ids), f.end_ids, f.end_strings,
                               seed=call_seed(self.req.seed, len(context)))

    def _answer_call(self) -> None:
        t, f, r = self.trace, self.forcer, self.req
        self.thinking = False
        t.answer_prefix_ids = list(f.answer_cut if t.hit_budget else f.answer_plain)
        context = t.prompt_ids + t.thinking_ids + t.answer_prefix_ids
        t.answer_budget = max(0, min(r.answer_budget, f.engine.max_model_len - len(context)))
        if t.answer_budget == 0:
            t.answer_finish_reason = "length"
            self._finish()
            return
        stop_ids, stop_strings = f.answer_stops(r.until)
        self.call = GenRequest(context, t.answer_budget, stop_ids, stop_strings, continued=False,
                               seed=call_seed(r.seed, len(context)))

    def feed(self, res: GenResult) -> None:
        t = self.trace
        for name in TOKEN_COUNTS:
            t.round_tokens[name].append(int(getattr(res, name, 0) or 0))
        if self.thinking:
            if self.forcer._think_step(t, res, self.forcing_left > 0):
                self.forcing_left -= 1
                self._think_call()
            else:
                self._answer_call()
            return
        t.answer_ids = list(res.token_ids)
        t.answer_finish_reason = res.finish_reason
        t.answer_stop_reason = res.stop_reason
        self._finish()

    def _finish(self) -> None:
        t = self.trace
        answer = t.answer_ids
        if t.answer_finish_reason == "stop" and answer and answer[-1] == t.answer_stop_reason:
            answer = answer[:-1]  # a stop token (EOS, <|im_end|>) is not part of the answer text
        t.text = self.forcer.markers.think_start + self.forcer.decode(t.thinking_ids + t.answer_prefix_ids + answer)
        self.forcer._char_spans(t)
        self.call = None


def _add_probe(trace: Trace, probe: RequestLoop) -> None:
    for k in TOKEN_COUNTS:
        trace.probe_tokens[k] += sum(probe.trace.round_tokens[k])


class BudgetForcer:
    """Runs the think / force / answer loop for a batch of requests on one engine."""

    def __init__(self, engine: Engine, markers: Markers, forcing_str: str = "Wait"):
        self.engine, self.markers, self.forcing_str = engine, markers, forcing_str
        tok = self.tok = engine.tokenizer
        eos = getattr(engine, "eos_token_ids", None) or [tok.eos_token_id]
        self.eos_ids = [int(i) for i in eos if i is not None]
        # Single-token markers stop by id (vLLM ignores special-token stop strings); others by string.
        self.end_ids, self.end_strings = list(self.eos_ids), []
        for marker in markers.think_end:
            ids = _encode(tok, marker)
            if len(ids) == 1:
                self.end_ids.append(ids[0])
            else:
                self.end_strings.append(marker)
        self.end_ids = sorted(set(self.end_ids))
        self.think_start_ids = _encode(tok, markers.think_start)
        self.newline_ids = _encode(tok, "\n")
        self.forced_ids = _encode(tok, forcing_str)
        self.answer_plain = _encode(tok, markers.answer_prefix(cut=False))
        self.answer_cut = _encode(tok, markers.answer_prefix(cut=True))

    # -- budgets --------------------------------------------------------------------------------
    def thinking_budget_for(self, req: BudgetRequest, prompt_len: int) -> int:
        """The effective budget: auto resolved, clamped so the answer prefix and 1 token still fit."""
        room = self.engine.max_model_len - prompt_len - len(self.answer_cut)
        if req.thinking_budget == AUTO:
            budget = room - req.answer_budget
        else:
            budget = min(int(req.thinking_budget), room - 1)
        return max(0, budget)

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def _splice(self, thinking: list[int]) -> list[int]:
        tail = self.decode(thinking[-8:]) if thinking else self.markers.think_start
        return (self.forced_ids if tail[-1:].isspace() else self.newline_ids + self.forced_ids)

    def answer_stops(self, until: list[str]) -> tuple[list[int], list[str]]:
        """EOS plus the task's stop strings; one that is a single special token stops by id (vLLM)."""
        stop_ids, stop_strings = list(self.eos_ids), []
        for s in until:
            ids = _encode(self.tok, s)
            if len(ids) == 1 and ids[0] in self.tok.all_special_ids:
                stop_ids.append(ids[0])
            else:
                stop_strings.append(s)
        return sorted(set(stop_ids)), stop_strings

    # -- the drivers ----------------------------------------------------------------------------
    def run(self, requests: list[BudgetRequest], progress: bool = False, on_done=None,
            probes: list[tuple[int, int]] = ()) -> list[Trace]:
        """All rounds of all requests; ``on_done(i, trace)`` is called the moment request i's trace is final.

        ``probes``: other (thinking budget, forcing) settings of a sweep grid, each at most this run's
        budget and forcing. When a request's thinking has ended, the loop runs again for it at every
        probe setting: behind a trace cache each of those thinking calls is served as a cut of this
        request's (greedy decoding, or seeded sampling: a call's seed is a function of its context),
        and the answer call it asks for goes to the engine at once, from the context just computed.
        Only their cost is kept (``Trace.probe_tokens``); their value is
        the trace cache, from which a later run at that setting is a pure replay.

        A streaming engine (vLLM) gets each request's next round as soon as its previous one ends
        (``_run_stream``). Otherwise requests go in groups of the engine's ``round_size`` (all at once
        if None): an engine with a small prefix cache (transformers) keeps each row's KV cache only
        until its next round, so it gets its requests a batch at a time, longest prompts first,
        through every round."""
        self._check_probes(requests, probes)
        self.probes = list(probes)
        if getattr(self.engine, "streaming", False):
            return self._run_stream(requests, progress, on_done)
        size = getattr(self.engine, "round_size", None) or len(requests) or 1
        order = list(range(len(requests)))
        if size < len(requests):  # groups of similar prompt length pad little
            order.sort(key=lambda i: -len(requests[i].prompt_ids))
        traces: list[Trace | None] = [None] * len(requests)
        show = progress and len(requests) > size
        with tqdm(total=len(requests), desc="m1_budget", disable=not show) as bar:
            for start in range(0, len(order), size):
                group = order[start: start + size]
                for i, trace in zip(group, self._run_group([requests[i] for i in group])):
                    traces[i] = trace
                    if on_done is not None:
                        on_done(i, trace)
                bar.update(len(group))
        return traces  # type: ignore[return-value]

    def _run_group(self, requests: list[BudgetRequest]) -> list[Trace]:
        """Barrier rounds: every thinking round of the group together, then one answer call."""
        t0 = time.perf_counter()
        loops = [RequestLoop(self, r) for r in requests]
        probes: list[tuple[Trace, RequestLoop]] = []
        spawned = not self.probes
        while True:
            live = loops + [lp for _, lp in probes]
            batch = [lp for lp in live if lp.thinking and not lp.done] or [lp for lp in live if not lp.done]
            if not spawned and not any(lp.thinking for lp in batch):  # every thinking of the group has ended
                probes = [(lp.trace, p) for lp, r in zip(loops, requests) for p in self._probe_loops(r)]
                spawned = True
                continue
            if not batch:
                break
            for lp, res in zip(batch, self.engine.generate([lp.call for lp in batch])):
                lp.feed(res)
        for trace, lp in probes:
            _add_probe(trace, lp)
        wall = (time.perf_counter() - t0) / max(1, len(loops))
        for lp in loops:
            lp.trace.wall_time = wall
        return [lp.trace for lp in loops]

    def _check_probes(self, requests: list[BudgetRequest], probes) -> None:
        for b, f in probes:
            if not isinstance(b, int) or not isinstance(f, int) or b < 0 or f < 0:
                raise ValueError(f"probe ({b!r}, {f!r}): thinking budget and forcing must be non-negative integers")
            for r in requests:
                if f > r.forcing or (r.thinking_budget != AUTO and b > int(r.thinking_budget)):
                    raise ValueError(f"probe (budget {b}, forcing {f}) exceeds the run's own (budget "
                                     f"{r.thinking_budget}, forcing {r.forcing}): probes must be cuts of it")

    def _probe_loops(self, req: BudgetRequest) -> list[RequestLoop]:
        """The loops of ``req`` at every probe setting but its own."""
        out = []
        for b, f in self.probes:
            lp = RequestLoop(self, dataclasses.replace(req, thinking_budget=b, forcing=f))
            own = self.thinking_budget_for(req, len(lp.trace.prompt_ids))
            if (lp.trace.thinking_budget, f) != (own, req.forcing):
                out.append(lp)
        return out

    def _run_stream(self, requests: list[BudgetRequest], progress: bool, on_done) -> list[Trace]:
        """Per-request rounds; when each call is sent (priorities, admission control) is scheduler.py's."""
        from m1_harness.thinking.scheduler import run_stream

        return run_stream(self, requests, progress, on_done)

    def _think_step(self, t: Trace, res: GenResult, may_force: bool) -> bool:
        """Apply one round's result; True when thinking was forced to continue."""
        ids = list(res.token_ids)
        t.rounds += 1
        t.finish_reasons.append(res.finish_reason)
        t.stop_reasons.append(res.stop_reason)
        if res.finish_reason == "stop" and ids and ids[-1] in self.end_ids:
            ids = ids[:-1]  # the end marker is removed at the token level, never spliced
        t.thinking_ids += ids
        t.generated_tokens += len(ids)
        if res.finish_reason != "stop":
            t.hit_budget = True
            return False
        if not may_force:
            return False
        forced = self._splice(t.thinking_ids)
        if len(forced) + 1 > t.thinking_budget - len(t.thinking_ids):
            t.forcing_skipped = True
            return False
        t.forced_positions.append(len(t.thinking_ids))
        t.forced_counts.append(len(forced))
        t.thinking_ids += forced
        t.forced_tokens += len(forced)
        return True

    def _char_spans(self, t: Trace) -> None:
        """Where the thinking and each forced splice lie in ``t.text``, in characters."""
        start = len(self.markers.think_start)
        at = lambda n: start + len(self.decode(t.thinking_ids[:n]))  # noqa: E731
        t.thinking_span = [start, at(len(t.thinking_ids))]
        t.forced_spans = [[at(p), at(p + c)] for p, c in zip(t.forced_positions, t.forced_counts)]
