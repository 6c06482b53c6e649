"""The streaming driver: when each generate call of the budget loop goes to a streaming engine (vLLM).

``request.py`` decides what a request asks for next (``RequestLoop``); this module decides only
*when* a call is sent. Each request moves to its next round (forcing, answer) the moment its
previous one ends, while its KV blocks are still cached, and its sweep probes' answers the moment
its thinking ends. Two rules keep those blocks alive until the next round reads them:

- Continuing rounds win: a new request's first call is sent at ``priority=1``, every later call
  (forcing, answer, probe answers) at 0, so vLLM's priority scheduler serves them before waiting
  new prompts and, when its KV cache runs out, preempts the newest new prompt first, never a
  request between rounds that an older one would have evicted.
- Admission by what requests hold: a new request is admitted while the KV blocks the admitted ones
  hold now plus their expected growth fit the engine's KV cache (``Admission``). Expected growth is
  learnt from the run: the mean thinking of the finished requests that thought longer than this
  one has so far (the whole budget while none has), then the answer and the probe answers.
  Reserving each request's worst case instead (the whole budget) ran 8-17 requests at once where
  64 fit (docs/performance.md); when the estimate falls short, vLLM's priority preemption takes
  the newest new prompt. An engine whose KV cache size is unknown (a server) admits by count
  instead: at most its ``max_in_flight`` requests at once.
"""

from __future__ import annotations

import dataclasses
import math
import time

from tqdm.auto import tqdm

from m1_harness.thinking.engines.base import as_streaming
from m1_harness.thinking.request import RequestLoop, RequestSetup, Trace, add_probe


def _blocks(tokens: int, block: int) -> int:
    return -(-max(0, tokens) // block)


class Admission:
    """The KV-block arithmetic of admission control, in one place (unit-tested on its own).

    Per request: its own context now (prompt + what it has computed, ``grown`` ids of the call in
    flight counted as one per engine step since it was sent) plus what it is expected to add, plus
    one block for the partial block a finished round leaves behind; each in-flight probe answer adds
    its context past the whole blocks it shares with the request, and its answer."""

    def __init__(self, forcer, capacity_blocks: int, block: int, n_probes: int, answer_budget: int):
        self.forcer, self.capacity, self.block = forcer, capacity_blocks, block
        ans = len(forcer.answer_cut) + answer_budget
        self.probe_blocks = n_probes * (_blocks(ans, block) + 1)  # a probe: partial block at its cut + answer
        self.thought: list[float] = []  # finished requests: thinking ids / thinking budget

    def observe(self, lp: RequestLoop) -> None:
        """A request's thinking has ended: how much of its budget it used teaches the estimate."""
        t = lp.trace
        if t.thinking_budget > 0:
            self.thought.append(len(t.thinking_ids) / t.thinking_budget)

    def thinking_left(self, budget: int, thought: int) -> int:
        """Thinking ids a request that has written ``thought`` of ``budget`` is expected to add: the
        mean over the finished requests that thought longer (shares of their budgets), or the whole
        rest of its budget when none did (at the start, and for the longest thinkers: the first
        requests to finish are the short ones, so a plain mean would count every long one short)."""
        longer = [f * budget for f in self.thought if f * budget > thought]
        if not longer:
            return budget - thought
        return min(budget, math.ceil(round(sum(longer) / len(longer), 6))) - thought  # round: float shares

    def request_blocks(self, lp: RequestLoop, grown: int, probes_due: bool) -> int:
        """Blocks request ``lp`` holds now plus its expected growth (``grown``: ids of its call in flight)."""
        t, f, b = lp.trace, self.forcer, self.block
        if lp.done:
            return (
                _blocks(len(t.prompt_ids) + len(t.thinking_ids) + len(t.answer_prefix_ids) + len(t.answer_ids), b) + 1
            )
        call = lp.next_call
        grown = min(grown, call.max_tokens)
        now = len(call.prompt_ids) + grown
        if lp.thinking:
            thought = len(t.thinking_ids) + grown
            rest = max(0, self.thinking_left(t.thinking_budget, thought))
            rest += len(f.answer_cut) + lp.req.answer_budget
        else:
            rest = call.max_tokens - grown
        return (
            min(_blocks(f.engine.max_model_len, b), _blocks(now + rest, b))
            + 1
            + (self.probe_blocks if probes_due else 0)
        )

    def probe_blocks_held(self, lp: RequestLoop, shared: int) -> int:
        """An in-flight probe answer: its context past the ``shared`` ids (whole blocks) it has in
        common with the request, and its answer budget."""
        if lp.done:
            return 0
        call = lp.next_call
        return _blocks(len(call.prompt_ids) - shared + call.max_tokens, self.block) + 1

    def fits(self, used: int, need: int, anyone_in_flight: bool) -> bool:
        """0 capacity (unknown) admits everything; at least one request is always in flight."""
        return not anyone_in_flight or not self.capacity or used + need <= self.capacity


def _common(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


class StreamDriver:
    """Carries the calls of every ``RequestLoop`` of a run to a streaming engine (``run``)."""

    def __init__(self, forcer: RequestSetup, requests, progress: bool, on_done):
        self.forcer, self.requests, self.on_done = forcer, requests, on_done
        self.eng = eng = as_streaming(forcer.engine)
        block = max(1, eng.block_size)
        capacity = eng.kv_cache_tokens // block  # in blocks; 0 = unknown: no limit
        answer = max((r.answer_budget for r in requests), default=0)
        self.adm = Admission(forcer, capacity, block, len(forcer.probes), answer)
        self.progress = progress
        self.traces: list[Trace | None] = [None] * len(requests)
        self.main: dict[int, RequestLoop] = {}  # admitted, not final: request i's own loop
        self.loops: dict[object, RequestLoop] = {}  # in flight; key i: request i, (i, k): its k-th probe
        self.sent: dict[object, tuple[int, int]] = {}  # key -> (engine step it was sent at, ids shared with i)
        self.left: dict[int, int] = {}  # request i: its loops not done yet (itself, then its probes)
        self.probed: set[int] = set()
        self.step = 0  # polls so far (each at most one engine step: one id per running request)

    # -- admission ------------------------------------------------------------------------------
    def _grown(self, key) -> int:
        return self.step - self.sent[key][0] if key in self.sent else 0

    def used(self) -> int:
        """Blocks the admitted requests hold now plus their expected growth."""
        adm, total = self.adm, 0
        for i, lp in self.main.items():
            total += adm.request_blocks(lp, self._grown(i), bool(self.forcer.probes) and i not in self.probed)
        for key, lp in self.loops.items():
            if not isinstance(key, int):
                total += adm.probe_blocks_held(lp, self.sent[key][1])
        return total

    # -- the loop -------------------------------------------------------------------------------
    def run(self) -> list[Trace]:
        t0 = time.perf_counter()
        pending = list(range(len(self.requests)))[::-1]  # pop() admits in request order
        nxt = None
        with tqdm(total=len(self.requests), desc="m1_budget", unit="request", disable=not self.progress) as self.bar:
            try:
                while pending or self.loops:
                    used = self.used() if pending else 0
                    while pending:
                        i = pending[-1]
                        lp = nxt if nxt is not None else RequestLoop(self.forcer, self.requests[i])
                        need = self.adm.request_blocks(lp, 0, bool(self.forcer.probes))
                        # a server: requests, not blocks; read each time (it shrinks when a replica stops answering)
                        bound = self.eng.max_in_flight
                        if not self.adm.fits(used, need, bool(self.loops)) or (
                            self.loops and bound and len(self.main) >= bound
                        ):
                            nxt = lp
                            break
                        pending.pop()
                        nxt = None
                        used += need
                        self.left[i] = 1
                        self.main[i] = lp
                        self.traces[i] = lp.trace
                        self._start(i, lp, priority=1)
                    ready = self.eng.poll()
                    self.step += 1
                    for key, res in ready:
                        lp = self.loops[key]
                        lp.feed(res)
                        self._advance(key, lp)
            except BaseException:
                self.eng.cancel()  # an error or interrupt part-way: leave nothing in flight for the next run
                raise
        wall = (time.perf_counter() - t0) / max(1, len(self.requests))
        traces = [t for t in self.traces if t is not None]
        assert len(traces) == len(self.requests), "the loop ends only once every request was admitted"
        for t in traces:
            t.wall_time = wall
        return traces

    def _start(self, key, lp: RequestLoop, priority: int = 0) -> None:
        self.loops[key] = lp
        self._advance(key, lp, priority)

    def _advance(self, key, lp: RequestLoop, priority: int = 0) -> None:
        if isinstance(key, int) and not lp.thinking:
            self._probe(key)  # before ``done``: the request is final only once its probes are
        if lp.done:
            self._done(key)
            return
        shared = 0
        call = lp.next_call
        if not isinstance(key, int):  # whole blocks it shares with the request's own context
            m = self.main[key[0]].trace
            shared = _common(call.prompt_ids, m.prompt_ids + m.thinking_ids) // self.adm.block * self.adm.block
        self.sent[key] = (self.step, shared)
        if priority != call.priority:
            call = dataclasses.replace(call, priority=priority)
        self.eng.submit(key, call)

    def _probe(self, i: int) -> None:
        """Request i's thinking has ended: every probe setting's answer, now, from the hot prefix."""
        if i in self.probed:
            return
        self.probed.add(i)
        self.adm.observe(self.main[i])
        if self.forcer.probes:
            for k, lp in enumerate(self.forcer.probe_loops(self.requests[i])):
                self.left[i] += 1
                self._start((i, k), lp)

    def _done(self, key) -> None:
        lp = self.loops.pop(key)
        self.sent.pop(key, None)
        i = key if isinstance(key, int) else key[0]
        trace = self.main[i].trace  # request i stays in ``main`` until its last loop is done
        if not isinstance(key, int):
            add_probe(trace, lp)
        self.left[i] -= 1
        if self.left[i] == 0:
            del self.main[i]
            self.bar.update(1)
            if self.on_done is not None:
                self.on_done(i, trace)


def run_stream(forcer: RequestSetup, requests, progress: bool, on_done) -> list[Trace]:
    """Per-request rounds on a streaming engine; see the module docstring."""
    return StreamDriver(forcer, requests, progress, on_done).run()
