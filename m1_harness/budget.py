"""Thinking budgets and budget forcing, engine-agnostic and batched.

One request goes through three phases (ARCHITECTURE.md, "Budget forcing, done right"):

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

Every round sends all still-thinking requests of a group to ``engine.generate`` together (a group
is all requests, or ``engine.round_size`` of them for an engine whose prefix cache is small), and
every budget is counted per request in token ids across rounds: ``generated + forced == len(thinking_ids) <=
thinking_budget``, always.

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
import time
from dataclasses import dataclass, field, fields

from tqdm.auto import tqdm

from m1_harness.engines.base import Engine, GenRequest, GenResult
from m1_harness.markers import Markers

AUTO = "auto"


@dataclass
class BudgetRequest:
    """One request: token ids of the rendered chat prompt WITHOUT the think marker."""

    prompt_ids: list[int]
    thinking_budget: int | str = AUTO  # tokens, or "auto"
    forcing: int = 0  # how many times to force thinking to continue
    answer_budget: int = 256
    until: list[str] = field(default_factory=list)  # task stop strings: answer phase only


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
    wall_time: float = 0.0  # seconds, amortised: the group's wall time / its requests (rounds are batched)

    @property
    def forcing_rounds(self) -> int:
        return len(self.forced_positions)

    @property
    def thinking_tokens(self) -> int:
        return len(self.thinking_ids)

    def record(self) -> dict:
        """A JSON-able summary without the (long) id lists, for trace files."""
        skip = {"prompt_ids", "thinking_ids", "answer_prefix_ids", "answer_ids"}  # asdict would deep-copy them
        d = {f.name: copy.copy(getattr(self, f.name)) for f in fields(self) if f.name not in skip}
        d.update(
            prompt_tokens=len(self.prompt_ids),
            thinking_tokens=self.thinking_tokens,
            answer_tokens=len(self.answer_ids),
            forcing_rounds=self.forcing_rounds,
        )
        return d


def _encode(tok, text: str) -> list[int]:
    return list(tok.encode(text, add_special_tokens=False)) if text else []


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

    # -- the loop -------------------------------------------------------------------------------
    def run(self, requests: list[BudgetRequest], progress: bool = False, on_done=None) -> list[Trace]:
        """All rounds of all requests, in groups of the engine's ``round_size`` (all at once if None).

        ``on_done(i, trace)`` is called the moment request ``i``'s trace is final, so a caller can
        make it durable before the rest of the run finishes (a crash then loses no finished record).

        An engine with a small prefix cache (transformers) keeps each row's KV cache only until
        its next round, so it gets its requests a batch at a time, longest prompts first, through
        every round; vLLM schedules everything itself and gets them all at once."""
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
        t0 = time.perf_counter()
        traces = []
        for r in requests:
            prompt = list(r.prompt_ids) + self.think_start_ids
            traces.append(Trace(prompt_ids=prompt, thinking_budget=self.thinking_budget_for(r, len(prompt))))
        forcing_left = [r.forcing for r in requests]
        active = [i for i, t in enumerate(traces) if t.thinking_budget > 0]
        while active:
            gen = [
                GenRequest(
                    prompt_ids=traces[i].prompt_ids + traces[i].thinking_ids,
                    max_tokens=traces[i].thinking_budget - len(traces[i].thinking_ids),
                    stop_token_ids=self.end_ids,
                    stop_strings=self.end_strings,
                )
                for i in active
            ]
            results = self.engine.generate(gen)
            still = []
            for i, res in zip(active, results):
                if self._think_step(traces[i], res, forcing_left[i] > 0):
                    forcing_left[i] -= 1
                    still.append(i)
            active = still
        self._answer(requests, traces)
        wall = (time.perf_counter() - t0) / max(1, len(traces))
        for t in traces:
            t.wall_time = wall
        return traces

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

    def _answer(self, requests: list[BudgetRequest], traces: list[Trace]) -> None:
        gen, todo = [], []
        for i, (r, t) in enumerate(zip(requests, traces)):
            t.answer_prefix_ids = list(self.answer_cut if t.hit_budget else self.answer_plain)
            context = t.prompt_ids + t.thinking_ids + t.answer_prefix_ids
            t.answer_budget = max(0, min(r.answer_budget, self.engine.max_model_len - len(context)))
            if t.answer_budget == 0:
                t.answer_finish_reason = "length"
                continue
            stop_ids, stop_strings = list(self.eos_ids), []
            for s in r.until:  # a stop string that is one special token must stop by id (vLLM)
                ids = _encode(self.tok, s)
                if len(ids) == 1 and ids[0] in self.tok.all_special_ids:
                    stop_ids.append(ids[0])
                else:
                    stop_strings.append(s)
            gen.append(GenRequest(context, t.answer_budget, sorted(set(stop_ids)), stop_strings, continued=False))
            todo.append(i)
        for i, res in zip(todo, self.engine.generate(gen) if gen else []):
            traces[i].answer_ids = list(res.token_ids)
            traces[i].answer_finish_reason = res.finish_reason
            traces[i].answer_stop_reason = res.stop_reason
        for r, t in zip(requests, traces):
            answer = t.answer_ids
            if t.answer_finish_reason == "stop" and answer and answer[-1] == t.answer_stop_reason:
                answer = answer[:-1]  # a stop token (EOS, <|im_end|>) is not part of the answer text
            t.text = self.markers.think_start + self.decode(t.thinking_ids + t.answer_prefix_ids + answer)
