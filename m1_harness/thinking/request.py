"""One request's state through think / force / answer: ``BudgetRequest`` in, ``Trace`` out.

``RequestLoop`` is one request as a state machine: it says which generate call it needs next and
takes that call's result; every think / force / answer decision is made here (budget.py's docstring
states the three phases and the budget rules). ``RequestSetup`` is what every loop of a run reads:
the engine's limits, the markers and forcing string encoded once, the sweep's probe settings. The
drivers (budget.py: batched; scheduler.py: streaming) only carry the calls to the engine.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from m1_harness.thinking.engines.base import TOKEN_COUNTS, Engine, GenRequest, GenResult
from m1_harness.thinking.markers import Markers
from m1_harness.thinking.seeds import call_seed

AUTO = "auto"


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


def _encode(tok, text: str) -> list[int]:
    return list(tok.encode(text, add_special_tokens=False)) if text else []


class RequestSetup:
    """The engine's limits and the token tables of one run's markers and forcing string, encoded once,
    plus the sweep's probe settings: everything a ``RequestLoop`` reads besides its own request."""

    def __init__(self, engine: Engine, markers: Markers, forcing_str: str = "Wait"):
        self.engine, self.markers, self.forcing_str = engine, markers, forcing_str
        tok = self.tok = engine.tokenizer
        eos = engine.eos_token_ids or [tok.eos_token_id]
        self.eos_ids = [int(i) for i in eos if i is not None]
        # Single-token markers stop by id (vLLM ignores special-token stop strings); others by string.
        end_ids, self.end_strings = list(self.eos_ids), []
        for marker in markers.think_end:
            ids = _encode(tok, marker)
            if len(ids) == 1:
                end_ids.append(ids[0])
            else:
                self.end_strings.append(marker)
        self.end_ids = sorted(set(end_ids))
        self.think_start_ids = _encode(tok, markers.think_start)
        self.newline_ids = _encode(tok, "\n")
        self.forced_ids = _encode(tok, forcing_str)
        self.answer_plain = _encode(tok, markers.answer_prefix(cut=False))
        self.answer_cut = _encode(tok, markers.answer_prefix(cut=True))
        self.probes: list[tuple[int, int]] = []  # the sweep's other (thinking budget, forcing) settings

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

    def splice(self, thinking: list[int]) -> list[int]:
        """The forced ids: the forcing string, after a newline unless the thinking ends in whitespace."""
        tail = self.decode(thinking[-8:]) if thinking else self.markers.think_start
        return self.forced_ids if tail[-1:].isspace() else self.newline_ids + self.forced_ids

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

    def probe_loops(self, req: BudgetRequest) -> list[RequestLoop]:
        """The loops of ``req`` at every probe setting but its own."""
        out = []
        for b, f in self.probes:
            lp = RequestLoop(self, dataclasses.replace(req, thinking_budget=b, forcing=f))
            own = self.thinking_budget_for(req, len(lp.trace.prompt_ids))
            if (lp.trace.thinking_budget, f) != (own, req.forcing):
                out.append(lp)
        return out


class RequestLoop:
    """One request's think / force / answer loop as a state machine: ``call`` is the generate call it
    needs next (None once ``done``), ``feed`` applies that call's result. Drivers only carry calls."""

    def __init__(self, setup: RequestSetup, req: BudgetRequest):
        self.setup, self.req = setup, req
        prompt = list(req.prompt_ids) + setup.think_start_ids
        self.trace = Trace(prompt_ids=prompt, thinking_budget=setup.thinking_budget_for(req, len(prompt)))
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

    @property
    def next_call(self) -> GenRequest:
        """``call`` where the driver knows the loop is live (drivers only send calls of loops not done)."""
        assert self.call is not None, "a done RequestLoop has no next call"
        return self.call

    def _think_call(self) -> None:
        t, f = self.trace, self.setup
        context = t.prompt_ids + t.thinking_ids
        self.call = GenRequest(
            context,
            t.thinking_budget - len(t.thinking_ids),
            f.end_ids,
            f.end_strings,
            seed=call_seed(self.req.seed, len(context)),
        )

    def _answer_call(self) -> None:
        t, f, r = self.trace, self.setup, self.req
        self.thinking = False
        t.answer_prefix_ids = list(f.answer_cut if t.hit_budget else f.answer_plain)
        context = t.prompt_ids + t.thinking_ids + t.answer_prefix_ids
        t.answer_budget = max(0, min(r.answer_budget, f.engine.max_model_len - len(context)))
        if t.answer_budget == 0:
            t.answer_finish_reason = "length"
            self._finish()
            return
        stop_ids, stop_strings = f.answer_stops(r.until)
        self.call = GenRequest(
            context, t.answer_budget, stop_ids, stop_strings, continued=False, seed=call_seed(r.seed, len(context))
        )

    def feed(self, res: GenResult) -> None:
        t = self.trace
        for name in TOKEN_COUNTS:
            t.round_tokens[name].append(int(getattr(res, name, 0) or 0))
        if self.thinking:
            if self._think_step(res):
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
        t.text = self.setup.markers.think_start + self.setup.decode(t.thinking_ids + t.answer_prefix_ids + answer)
        self._char_spans()
        self.call = None

    def _think_step(self, res: GenResult) -> bool:
        """Apply one round's result; True when thinking was forced to continue."""
        t = self.trace
        ids = list(res.token_ids)
        t.rounds += 1
        t.finish_reasons.append(res.finish_reason)
        t.stop_reasons.append(res.stop_reason)
        if res.finish_reason == "stop" and ids and ids[-1] in self.setup.end_ids:
            ids = ids[:-1]  # the end marker is removed at the token level, never spliced
        t.thinking_ids += ids
        t.generated_tokens += len(ids)
        if res.finish_reason != "stop":
            t.hit_budget = True
            return False
        if self.forcing_left <= 0:
            return False
        forced = self.setup.splice(t.thinking_ids)
        if len(forced) + 1 > t.thinking_budget - len(t.thinking_ids):
            t.forcing_skipped = True
            return False
        t.forced_positions.append(len(t.thinking_ids))
        t.forced_counts.append(len(forced))
        t.thinking_ids += forced
        t.forced_tokens += len(forced)
        return True

    def _char_spans(self) -> None:
        """Where the thinking and each forced splice lie in ``text``, in characters."""
        t = self.trace
        start = len(self.setup.markers.think_start)

        def at(n: int) -> int:
            return start + len(self.setup.decode(t.thinking_ids[:n]))

        t.thinking_span = [start, at(len(t.thinking_ids))]
        t.forced_spans = [[at(p), at(p + c)] for p, c in zip(t.forced_positions, t.forced_counts)]


def add_probe(trace: Trace, probe: RequestLoop) -> None:
    """Count a finished probe loop's engine work into the trace of the request it probed."""
    for k in TOKEN_COUNTS:
        trace.probe_tokens[k] += sum(probe.trace.round_tokens[k])
