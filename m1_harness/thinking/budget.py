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

Each request is a small state machine (``RequestLoop``, request.py): it says which generate call it needs next
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

import time
from collections.abc import Sequence

from tqdm.auto import tqdm

from m1_harness.thinking.request import AUTO, BudgetRequest, RequestLoop, RequestSetup, Trace, add_probe
from m1_harness.thinking.scheduler import run_stream


class BudgetForcer(RequestSetup):
    """Runs the think / force / answer loop for a batch of requests on one engine: the markers are
    encoded once (``RequestSetup``), then the engine's driver carries every request's calls."""

    # -- the drivers ----------------------------------------------------------------------------
    def run(
        self,
        requests: list[BudgetRequest],
        progress: bool = False,
        on_done=None,
        probes: Sequence[tuple[int, int]] = (),
    ) -> list[Trace]:
        """All rounds of all requests; ``on_done(i, trace)`` is called the moment request i's trace is final.

        ``probes``: other (thinking budget, forcing) settings of a sweep grid, each at most this run's
        budget and forcing. When a request's thinking has ended, the loop runs again for it at every
        probe setting: behind a trace cache each of those thinking calls is served as a cut of this
        request's (greedy decoding, or seeded sampling: a call's seed is a function of its context),
        and the answer call it asks for goes to the engine at once, from the context just computed.
        Only their cost is kept (``Trace.probe_tokens``); their value is
        the trace cache, from which a later run at that setting is a pure replay.

        A streaming engine (vLLM) gets each request's next round as soon as its previous one ends
        (scheduler.py). Otherwise requests go in groups of the engine's ``round_size`` (all at once
        if None): an engine with a small prefix cache (transformers) keeps each row's KV cache only
        until its next round, so it gets its requests a batch at a time, longest prompts first,
        through every round."""
        self._check_probes(requests, probes)
        self.probes = list(probes)
        if self.engine.streaming:  # per-request rounds; when each call is sent is scheduler.py's
            return run_stream(self, requests, progress, on_done)
        size = self.engine.round_size or len(requests) or 1
        order = list(range(len(requests)))
        if size < len(requests):  # groups of similar prompt length pad little
            order.sort(key=lambda i: -len(requests[i].prompt_ids))
        traces: list[Trace | None] = [None] * len(requests)
        with tqdm(total=len(requests), desc="m1_budget", unit="request", disable=not progress) as bar:
            for start in range(0, len(order), size):
                group = order[start : start + size]
                for i, trace in zip(group, self._run_group([requests[i] for i in group])):
                    traces[i] = trace
                    if on_done is not None:
                        on_done(i, trace)
                bar.update(len(group))
        done = [t for t in traces if t is not None]
        assert len(done) == len(requests), "every group was run"
        return done

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
                probes = [(lp.trace, p) for lp, r in zip(loops, requests) for p in self.probe_loops(r)]
                spawned = True
                continue
            if not batch:
                break
            for lp, res in zip(batch, self.engine.generate([lp.next_call for lp in batch])):
                lp.feed(res)
        for trace, lp in probes:
            add_probe(trace, lp)
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
                    raise ValueError(
                        f"probe (budget {b}, forcing {f}) exceeds the run's own (budget "
                        f"{r.thinking_budget}, forcing {r.forcing}): probes must be cuts of it"
                    )
