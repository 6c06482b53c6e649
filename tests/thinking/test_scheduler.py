"""Admission control and priorities of the streaming driver (scheduler.py), pinned on the scripted
engine (one id per character, so every count below is a count of characters)."""

from m1_harness.thinking.budget import BudgetForcer
from m1_harness.thinking.engines.base import GenResult
from m1_harness.thinking.engines.scripted import Script, StreamingScriptedEngine
from m1_harness.thinking.markers import PRESETS
from m1_harness.thinking.request import BudgetRequest, RequestLoop
from m1_harness.thinking.scheduler import Admission
from m1_harness.thinking.tracecache import CachingEngine, TraceCache

M1 = PRESETS["m1"]
END = "<|im_end|>"
# "A" + "<|im_start|>think\n" = 8 prompt ids; "\n<|im_start|>answer\n" = 9 ids, + "Final Answer:" = 22
PROMPT, PLAIN, CUT = 8, 9, 22


def engine(kv_blocks=0, rounds=("a" * 4 + END,)):
    return StreamingScriptedEngine({"A": Script(list(rounds), "ok" + END)}, kv_cache_tokens=8 * kv_blocks, block_size=8)


def test_admission_counts_what_a_request_holds_and_the_thinking_seen_so_far():
    forcer = BudgetForcer(engine(), M1)
    assert (len(forcer.answer_plain), len(forcer.answer_cut)) == (PLAIN, CUT)
    req = BudgetRequest(forcer.tok.encode("A"), thinking_budget=40, answer_budget=8)
    adm = Admission(forcer, capacity_blocks=22, block=8, n_probes=3, answer_budget=8)
    lp = RequestLoop(forcer, req)
    # before any request has ended its thinking: the whole budget, 8 + 40 + 22 + 8 = 78 ids -> 10
    # blocks, + 1 for the partial block a finished round leaves
    assert adm.request_blocks(lp, 0, probes_due=False) == 11
    assert adm.request_blocks(lp, 39, probes_due=False) == 11  # growth inside the estimate: no change
    # its sweep probes, each the partial block at its cut + 22 + 8 answer ids: 3 x (4 + 1)
    assert adm.request_blocks(lp, 0, probes_due=True) == 11 + 15
    lp.feed(GenResult(forcer.tok.encode("aaaa" + END), "stop", 2))  # thinks 4 of its 40 ids
    assert not lp.thinking and len(lp.call.prompt_ids) == PROMPT + 4 + PLAIN
    assert adm.request_blocks(lp, 0, probes_due=False) == 4 + 1  # answer round: 21 + 8 ids
    adm.observe(lp)
    # expected: the mean of the finished requests that thought longer (shares of the budget), or
    # the rest of the budget when none did
    assert [
        adm.thinking_left(40, 0),
        adm.thinking_left(40, 3),
        adm.thinking_left(40, 4),
        adm.thinking_left(1000, 0),
    ] == [4, 1, 36, 100]
    adm.observe(RequestLoop(forcer, BudgetRequest(req.prompt_ids, thinking_budget=5)))  # 0 of 5: thought nothing
    adm.thought.append(0.3)  # another thought 30% of its budget
    assert [adm.thinking_left(40, 0), adm.thinking_left(40, 4), adm.thinking_left(40, 12)] == [8, 8, 28]
    del adm.thought[1:]
    fresh = RequestLoop(forcer, req)
    assert adm.request_blocks(fresh, 0, probes_due=False) == 6 + 1  # 8 + 4 + 22 + 8 = 42 ids
    # past every finished request: the whole budget again, 8 + 40 + 22 + 8 = 78 ids
    assert adm.request_blocks(fresh, 20, probes_due=False) == 10 + 1
    assert adm.fits(used=15, need=7, anyone_in_flight=True) and not adm.fits(16, 7, True)
    assert adm.fits(100, 7, anyone_in_flight=False)  # at least one request always runs
    assert Admission(forcer, 0, 8, 0, 8).fits(10**6, 7, True)  # KV size unknown: no limit


def test_admission_follows_what_requests_hold_not_their_worst_case():
    """22 blocks hold two requests at their worst case (11 each); once request 0 has shown it
    thinks 4 of its 40 ids, request 1 is counted at 7 blocks and request 0 (answering) at 5, so
    request 2 is admitted beside them (19 of 22). Reserving worst cases kept 2 in flight."""
    eng = engine(kv_blocks=22)
    reqs = [BudgetRequest(eng.tokenizer.encode("A"), thinking_budget=40, answer_budget=8)] * 6
    traces = BudgetForcer(eng, M1).run(reqs)
    assert eng.log[:6] == [("submit", 0), ("submit", 1), ("done", 0), ("submit", 0), ("submit", 2), ("done", 1)]
    assert eng.peak == 3
    assert all(t.text == "<|im_start|>think\naaaa\n<|im_start|>answer\nok" for t in traces)
    # new prompts at priority 1, continuing rounds (the answer) at 0: vLLM serves those first
    assert [(c.priority, len(c.prompt_ids)) for (c,) in eng.calls[:3]] == [
        (1, PROMPT),
        (1, PROMPT),
        (0, PROMPT + 4 + PLAIN),
    ]
    assert sorted(c.priority for (c,) in eng.calls) == [0] * 6 + [1] * 6


def test_forcing_rounds_and_probe_answers_are_continuing_rounds(tmp_path):
    eng = engine(rounds=["a" * 4 + END, "b" * 3 + END])
    req = BudgetRequest(eng.tokenizer.encode("A"), thinking_budget=40, forcing=1, answer_budget=8)
    cached = CachingEngine(eng, TraceCache(tmp_path / "c.sqlite", "scripted"))
    (t,) = BudgetForcer(cached, M1).run([req], probes=[(40, 0), (2, 0)])
    assert t.rounds == 2 and t.forcing_rounds == 1
    sent = [(c.priority, len(c.prompt_ids)) for (c,) in eng.calls]
    forced = PROMPT + 4 + 1 + len("Wait")  # "\n" spliced before "Wait"
    answered = forced + 3 + PLAIN
    # think (new), forced round, answer, then the probes' answers: (40, 0) after "aaaa", and
    # (2, 0) cut by its budget ("aa" + the cut marker); their thinking comes from the trace cache
    assert sent == [(1, PROMPT), (0, forced), (0, answered), (0, PROMPT + 4 + PLAIN), (0, PROMPT + 2 + CUT)]
