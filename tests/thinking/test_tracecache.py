"""The trace cache on the scripted engine: cutting a longer trace equals a fresh shorter run."""

import pytest

from m1_harness.thinking.budget import BudgetForcer
from m1_harness.thinking.engines.base import GenRequest, GenResult
from m1_harness.thinking.engines.scripted import Script, ScriptedEngine
from m1_harness.thinking.markers import PRESETS
from m1_harness.thinking.request import BudgetRequest
from m1_harness.thinking.tracecache import CacheRefused, CachingEngine, TraceCache

END = "<|im_end|>"
SCRIPTS = {
    "P1": Script(["abcdefghij" + END, "klmnop" + END, "qrstuvwxyz" * 3 + END]),
    "P2": Script(["a" + END, "b" + END, "c" + END, "d" + END]),
    "P3": Script(["x" * 80]),
}


def traces(engine, budget, forcing):
    forcer = BudgetForcer(engine, PRESETS["m1"])
    reqs = [BudgetRequest(engine.tokenizer.encode(p), budget, forcing, 20, ["\n\n"]) for p in SCRIPTS]
    return forcer.run(reqs)


def fields(t):
    return (t.thinking_ids, t.answer_ids, t.text, t.hit_budget, t.forced_positions, t.finish_reasons, t.rounds)


@pytest.mark.parametrize("budget,forcing", [(5, 2), (12, 1), (25, 2), (40, 0), (200, 3), (0, 2)])
def test_cut_trace_equals_fresh_run(tmp_path, budget, forcing):
    base = ScriptedEngine(SCRIPTS)
    cache = TraceCache(tmp_path / "c.sqlite", "scripted", {"temperature": 0})
    traces(CachingEngine(base, cache), 200, 3)  # the long run fills the cache
    calls_before = len(base.calls)
    cached = traces(CachingEngine(base, cache), budget, forcing)
    fresh = traces(ScriptedEngine(SCRIPTS), budget, forcing)
    assert [fields(t) for t in cached] == [fields(t) for t in fresh]
    thinking_calls = [c for c in base.calls[calls_before:] if any(not r.stop_strings for r in c)]
    assert thinking_calls == []  # only answer-phase requests reached the engine


def test_resume_after_crash_regenerates_nothing_finished(tmp_path):
    class Crashing(ScriptedEngine):
        budget_calls = 0

        def generate(self, requests):
            self.budget_calls += 1
            if self.budget_calls == 3:
                raise KeyboardInterrupt
            return super().generate(requests)

    cache = TraceCache(tmp_path / "c.sqlite", "scripted")
    with pytest.raises(KeyboardInterrupt):
        traces(CachingEngine(Crashing(SCRIPTS), cache, chunk_size=1), 200, 3)
    base = ScriptedEngine(SCRIPTS)
    resumed = traces(CachingEngine(base, cache, chunk_size=1), 200, 3)
    assert [fields(t) for t in resumed] == [fields(t) for t in traces(ScriptedEngine(SCRIPTS), 200, 3)]
    regenerated = [r.prompt_ids for c in base.calls for r in c]
    assert len(regenerated) == sum(1 + t.rounds for t in resumed) - 2  # the 2 finished calls were kept


def test_serving_rules(tmp_path):
    tok = ScriptedEngine({}).tokenizer
    cache = TraceCache(tmp_path / "c.sqlite", "m")

    def req(m, **kw):
        return GenRequest([5, 6], m, **kw)

    cache.store([req(10, stop_token_ids=[2])], [GenResult([107, 108, 2], "stop", 2)], tok)
    assert cache.lookup(req(3, stop_token_ids=[2]), tok).token_ids == [107, 108, 2]
    r = cache.lookup(req(2, stop_token_ids=[2]), tok)
    assert (r.token_ids, r.finish_reason) == ([107, 108], "length")
    assert cache.lookup(req(3), tok) is None  # another stop set is another key
    cache.store([req(4)], [GenResult([107, 108, 109, 109], "length")], tok)
    assert cache.lookup(req(4), tok).token_ids == [107, 108, 109, 109] and cache.lookup(req(5), tok) is None
    cache.store([req(9, stop_strings=["ab"])], [GenResult([107, 108], "stop", "ab")], tok)  # "ab" is 2 ids
    assert cache.lookup(req(1, stop_strings=["ab"]), tok).finish_reason == "length"
    assert cache.lookup(req(3, stop_strings=["ab"]), tok) is None
    assert cache.lookup(req(4, stop_strings=["ab"]), tok).finish_reason == "stop"


SAMPLED = {"temperature": 0.7, "top_p": 0.9}


def test_refuses_unseeded_sampling(tmp_path):
    tok = ScriptedEngine({}).tokenizer
    cache = TraceCache(tmp_path / "c.sqlite", "m")
    with pytest.raises(CacheRefused) as err:
        cache.lookup(GenRequest([5, 6], 3), tok, SAMPLED)
    assert str(err.value) == (
        "the trace cache holds sampled calls only when each has its own seed (decoding {'temperature': 0.7, "
        "'top_p': 0.9}): unseeded sampled traces are not prefixes of one another. Pass a seed (seed=S) or cache=off."
    )
    with pytest.raises(CacheRefused):
        cache.store([GenRequest([5, 6], 3)], [GenResult([107], "length")], tok, SAMPLED)


def test_seeded_sampled_calls_hit_only_with_the_same_seed_and_decoding(tmp_path):
    tok = ScriptedEngine({}).tokenizer
    cache = TraceCache(tmp_path / "c.sqlite", "m")
    req = lambda n, seed=7, **kw: GenRequest([5, 6], n, stop_token_ids=[2], seed=seed, **kw)  # noqa: E731
    cache.store([req(4)], [GenResult([107, 108, 109, 110], "length")], tok, SAMPLED)
    assert cache.lookup(req(2), tok, SAMPLED).token_ids == [107, 108]  # a cut of the same sample
    assert cache.lookup(req(4), tok, SAMPLED).token_ids == [107, 108, 109, 110]
    assert cache.lookup(req(5), tok, SAMPLED) is None  # longer than stored: the engine must go on
    assert cache.lookup(req(2, seed=8), tok, SAMPLED) is None  # another sample
    assert cache.lookup(req(2), tok, {**SAMPLED, "top_p": 1.0}) is None  # another decoding
    assert cache.lookup(req(2), tok) is None  # greedy is not that sample
    cache.store([req(4, seed=None)], [GenResult([120, 121, 122, 123], "length")], tok)
    assert cache.lookup(req(3, seed=99), tok).token_ids == [120, 121, 122]  # greedy: the seed plays no part


def test_a_longer_result_replaces_a_shorter_one_and_a_stop_is_never_replaced(tmp_path):
    tok = ScriptedEngine({}).tokenizer
    cache = TraceCache(tmp_path / "c.sqlite", "m")

    def req(m):
        return GenRequest([5, 6], m, stop_token_ids=[2])  # a length result has exactly max_tokens ids

    cache.store([req(2)], [GenResult([107, 108], "length")], tok)
    cache.store([req(1)], [GenResult([107], "length")], tok)  # shorter: kept the longer
    assert cache.lookup(GenRequest([5, 6], 2, stop_token_ids=[2]), tok).token_ids == [107, 108]
    cache.store([req(4)], [GenResult([107, 108, 109, 110], "length")], tok)  # longer: replaces
    assert cache.lookup(GenRequest([5, 6], 4, stop_token_ids=[2]), tok).token_ids == [107, 108, 109, 110]
    cache.store([req(10)], [GenResult([107, 108, 109, 110, 111, 2], "stop", 2)], tok)  # a stop beats any length
    assert cache.lookup(GenRequest([5, 6], 50, stop_token_ids=[2]), tok).finish_reason == "stop"
    cache.store([req(20)], [GenResult([107] * 20, "length")], tok)  # even a longer length never replaces a stop
    hit = cache.lookup(GenRequest([5, 6], 50, stop_token_ids=[2]), tok)
    assert (hit.token_ids, hit.finish_reason) == ([107, 108, 109, 110, 111, 2], "stop")


def test_a_corrupt_cache_file_is_moved_aside_and_a_fresh_one_started(tmp_path, caplog):
    path = tmp_path / "traces.sqlite"
    path.write_bytes(b"this is not a database, it was half-copied" * 100)
    with caplog.at_level("WARNING", logger="m1_harness.thinking.tracecache"):
        cache = TraceCache(path, "m")
    (aside,) = tmp_path.glob("traces.sqlite.corrupt-*")
    assert aside.read_bytes().startswith(b"this is not a database")
    assert f"trace cache {path} could not be read (file is not a database): moved it to {aside}" in caplog.text
    tok = ScriptedEngine({}).tokenizer
    cache.store([GenRequest([1], 3)], [GenResult([107, 108, 109], "length")], tok)
    assert TraceCache(path, "m").lookup(GenRequest([1], 3), tok).token_ids == [107, 108, 109]


def test_hits_from_other_library_versions_are_counted_and_named(tmp_path):
    import json
    import sqlite3

    tok = ScriptedEngine({}).tokenizer
    cache = TraceCache(tmp_path / "c.sqlite", "m")
    cache.store([GenRequest([1], 3)], [GenResult([107, 108, 109], "length")], tok)
    old = dict(json.loads(cache.versions), transformers="4.0.0")
    with sqlite3.connect(tmp_path / "c.sqlite") as db:
        db.execute("UPDATE gen SET versions=?", (json.dumps(old, sort_keys=True),))
    again = TraceCache(tmp_path / "c.sqlite", "m")
    assert again.lookup(GenRequest([1], 3), tok).token_ids == [107, 108, 109]
    again.hits += 1
    now = json.loads(cache.versions)["transformers"]
    assert again.other_version_hits == 1
    assert again.version_note() == (
        f"1 of 1 trace-cache hits were generated under other library versions (transformers "
        f"4.0.0 -> {now}); pass cache=off or a fresh cache_dir to regenerate them"
    )


# -- in-flight sweep probes: one pass fills the cache for the whole grid ------------------------
GRIDS = [
    [(200, 3), (40, 3), (25, 2), (12, 1), (5, 0), (0, 0)],
    [(60, 2), (60, 0), (30, 1), (8, 2)],
    [(25, 1), (25, 0), (24, 1), (1, 0)],
]


def probe_traces(engine, grid, probes=True):
    forcer = BudgetForcer(engine, PRESETS["m1"])
    (b, f), rest = grid[0], grid[1:]
    reqs = [BudgetRequest(engine.tokenizer.encode(p), b, f, 20, ["\n\n"]) for p in SCRIPTS]
    return forcer.run(reqs, probes=rest if probes else ())


@pytest.mark.parametrize("streaming", [False, True])
@pytest.mark.parametrize("grid", GRIDS)
def test_probes_make_every_other_setting_a_pure_replay(tmp_path, grid, streaming):
    from m1_harness.thinking.engines.scripted import StreamingScriptedEngine

    base = (
        StreamingScriptedEngine(SCRIPTS, kv_cache_tokens=400, block_size=8)
        if streaming
        else ScriptedEngine(SCRIPTS, round_size=2)
    )
    cache = TraceCache(tmp_path / "c.sqlite", "scripted")
    largest = probe_traces(CachingEngine(base, cache), grid)
    alone = probe_traces(CachingEngine(ScriptedEngine(SCRIPTS), TraceCache(tmp_path / "d.sqlite", "s")), grid, False)
    assert [fields(t) for t in largest] == [fields(t) for t in alone]
    probed = sum(t.probe_tokens["generated_tokens"] for t in largest)
    assert probed > 0 and all(
        set(t.probe_tokens) == {"context_tokens", "cached_tokens", "generated_tokens"} for t in largest
    )
    calls = len(base.calls)
    for b, f in grid[1:]:
        replay = traces(CachingEngine(base, cache), b, f)
        assert [fields(t) for t in replay] == [fields(t) for t in traces(ScriptedEngine(SCRIPTS), b, f)]
        assert all(sum(sum(v) for v in t.round_tokens.values()) == 0 for t in replay)  # nothing ran
    assert len(base.calls) == calls  # no generate call at all after the probing run
    # probes generated exactly the answers the replays needed: their engine work, no more
    fresh = [traces(ScriptedEngine(SCRIPTS), b, f) for b, f in grid[1:]]
    answers = {
        (tuple(t.prompt_ids + t.thinking_ids + t.answer_prefix_ids), len(t.answer_ids))
        for run in fresh
        for t in run
        if t.answer_budget
    }
    mine = {(tuple(t.prompt_ids + t.thinking_ids + t.answer_prefix_ids), len(t.answer_ids)) for t in largest}
    assert probed == sum(n for _, n in answers - mine)


def test_probes_must_be_cuts_of_the_run(tmp_path):
    engine = CachingEngine(ScriptedEngine(SCRIPTS), TraceCache(tmp_path / "c.sqlite", "s"))
    with pytest.raises(
        ValueError,
        match=r"probe \(budget 50, forcing 1\) exceeds the run's own \(budget 40, "
        r"forcing 2\): probes must be cuts of it",
    ):
        probe_traces(engine, [(40, 2), (50, 1)])
    with pytest.raises(ValueError, match=r"probe \(budget 10, forcing 3\) exceeds"):
        probe_traces(engine, [(40, 2), (10, 3)])
