"""The transformers engine and the budget loop on a real (tiny) model: stopping, determinism, cache."""

import pytest
import torch
from m1tiny import QUESTIONS, chatty_tiny_qwen2

from m1_harness.thinking.budget import BudgetForcer
from m1_harness.thinking.engines import load_engine
from m1_harness.thinking.engines.base import Engine, GenRequest
from m1_harness.thinking.markers import PRESETS
from m1_harness.thinking.request import BudgetRequest
from m1_harness.thinking.tracecache import CachingEngine, TraceCache


@pytest.fixture(scope="module")
def engine(chatty_tiny):
    return load_engine("hf", pretrained=chatty_tiny, batch_size=4, progress=False, dtype="float32")


def prompts(engine):
    tok = engine.tokenizer
    return [
        tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
        for q in QUESTIONS
    ]


def budget_run(engine, budget, forcing, answer=24):
    tok = engine.tokenizer
    reqs = [
        BudgetRequest(tok.encode(p, add_special_tokens=False), budget, forcing, answer, ["\n\n"])
        for p in prompts(engine)
    ]
    return BudgetForcer(engine, PRESETS["m1"]).run(reqs)


def key(t):
    return (t.thinking_ids, t.forced_positions, t.finish_reasons, t.hit_budget, t.answer_ids, t.text)


def test_per_row_stopping_and_batch_equals_single(engine):
    tok = engine.tokenizer
    ids = [tok.encode(p + "<|im_start|>think\n", add_special_tokens=False) for p in prompts(engine)]
    reqs = [
        GenRequest(i, 3 + 12 * k, stop_token_ids=[1, 2], stop_strings=["ru"] if k % 2 else [])
        for k, i in enumerate(ids)
    ]
    batch = engine.generate(reqs)
    for req, res in zip(reqs, batch):
        assert len(res.token_ids) <= req.max_tokens
        if res.finish_reason == "length":
            assert len(res.token_ids) == req.max_tokens and res.stop_reason is None
        elif isinstance(res.stop_reason, int):
            assert res.token_ids[-1] == res.stop_reason and res.stop_reason not in res.token_ids[:-1]
        else:
            assert res.stop_reason == "ru" and "ru" not in res.text
        assert res.text == tok.decode(res.token_ids, skip_special_tokens=False)
    assert {r.finish_reason for r in batch} == {"stop", "length"}
    assert any(isinstance(r.stop_reason, str) for r in batch)
    for req, res in zip(reqs, batch):
        assert engine.generate([req])[0] == res


def test_budget_forcing_deterministic_and_batch_equals_single(engine):
    a, b = budget_run(engine, 60, 2), budget_run(engine, 60, 2)
    assert [key(t) for t in a] == [key(t) for t in b]
    assert any(t.forcing_rounds for t in a) and any(t.hit_budget for t in a)
    for t in a:
        assert t.generated_tokens + t.forced_tokens == len(t.thinking_ids) <= 60
        assert ("Final Answer:" in t.text) == t.hit_budget
    engine.batch_size = 1
    try:
        assert [key(t) for t in budget_run(engine, 60, 2)] == [key(t) for t in a]
    finally:
        engine.batch_size = 4


@pytest.mark.parametrize("budget,forcing", [(8, 2), (30, 1), (64, 2), (64, 0)])
def test_cache_cut_equals_fresh_run(engine, tmp_path, budget, forcing):
    cache = TraceCache(tmp_path / "c.sqlite", "tiny", {"temperature": 0})
    budget_run(CachingEngine(engine, cache), 96, 3)
    before = cache.misses
    cached = budget_run(CachingEngine(engine, cache), budget, forcing)
    assert cache.misses - before <= len(QUESTIONS)  # only the answer phase was generated
    assert [key(t) for t in cached] == [key(t) for t in budget_run(engine, budget, forcing)]


@pytest.fixture(scope="module")
def plain_engine(engine):
    """The same model without the prefix cache: every call prefills its whole prompt."""
    path = engine.model.config._name_or_path
    return load_engine("hf", pretrained=path, batch_size=4, progress=False, dtype="float32", prefix_cache=False)


@pytest.mark.parametrize("alone", [False, True])
def test_prefix_cache_prefills_only_the_new_ids(engine, plain_engine, alone, monkeypatch):
    monkeypatch.setattr(engine, "prefill_rows_alone", alone)
    engine.prefix_cache.clear()
    tok = engine.tokenizer
    firsts = [
        GenRequest(tok.encode(p + "<|im_start|>think\n", add_special_tokens=False), 9 + k)
        for k, p in enumerate(prompts(engine)[:3])
    ]
    done = engine.generate(firsts)
    assert [r.finish_reason for r in done] == ["length"] * 3
    extras = [tok.encode(s, add_special_tokens=False) for s in ("\nWait", "\n<|im_start|>answer\n", "!")]
    assert [len(e) for e in extras] == [2, 5, 1]
    follow = [GenRequest(f.prompt_ids + r.token_ids + e, 8) for f, r, e in zip(firsts, done, extras)]
    cached, prefilled = engine.prompt_ids_cached, engine.prompt_ids_prefilled
    res = engine.generate(follow)
    assert res == plain_engine.generate(follow)
    # Rows 0 and 1 stopped before the batch did, so the model saw all their ids; row 2 ended the
    # call, its last id never fed (no KV). Uncached suffixes: 2, 5, 1 + 1. Batched, rows are
    # right-aligned, so each prefills the longest of them, 5 ids; prefilled alone, each row computes
    # its own suffix but the last id (1, 4, 1), and the batch then feeds one id per row.
    computed = 1 + 4 + 1 + 3 if alone else 3 * 5
    assert engine.prompt_ids_prefilled - prefilled == computed
    assert engine.prompt_ids_cached - cached == sum(len(r.prompt_ids) for r in follow) - computed
    per_row = [2, 5, 2] if alone else [5, 5, 5]  # the same, per result (round_tokens in trace records)
    assert [(r.context_tokens, r.cached_tokens, r.generated_tokens) for r in res] == [
        (len(f.prompt_ids), len(f.prompt_ids) - c, 8) for f, c in zip(follow, per_row)
    ]


def test_rows_prefilled_alone_share_what_they_have_in_common(engine, plain_engine):
    """On CPU each row is prefilled alone, reusing the longest prefix an earlier row left (the chat
    template and a common instruction here); no row's KV is lost to another that only shares a
    prefix with it."""
    assert engine.prefill_rows_alone  # the CPU default
    tok = engine.tokenizer
    common = "Answer the medical question below, thinking step by step.\n"
    chats = [
        tok.apply_chat_template([{"role": "user", "content": common + q}], tokenize=False, add_generation_prompt=True)
        for q in QUESTIONS
    ]
    reqs = [GenRequest(tok.encode(c + "<|im_start|>think\n", add_special_tokens=False), 6) for c in chats]
    engine.prefix_cache.clear()
    prefilled = engine.prompt_ids_prefilled
    assert engine.generate(reqs) == plain_engine.generate(reqs)

    def shared(a, b):
        n = 0
        while n < min(len(a), len(b)) and a[n] == b[n]:
            n += 1
        return n

    expected, kept = len(reqs), []  # the batch then feeds each row its last id
    for ids in sorted((r.prompt_ids for r in reqs), key=len, reverse=True):  # the engine's order
        n = min(max((shared(ids, k) for k in kept), default=0), len(ids) - 1)
        expected += len(ids) - 1 - n
        kept.append(ids[:-1])
    assert engine.prompt_ids_prefilled - prefilled == expected
    assert expected <= sum(len(r.prompt_ids) for r in reqs) - len(tok.encode(common)) * (len(reqs) - 1)


@pytest.mark.parametrize("budget,forcing", [(8, 2), (60, 2), (64, 0), (96, 3)])
def test_budget_loop_with_prefix_cache_equals_full_prefill(engine, plain_engine, budget, forcing):
    cached = engine.prompt_ids_cached
    assert [key(t) for t in budget_run(engine, budget, forcing)] == [
        key(t) for t in budget_run(plain_engine, budget, forcing)
    ]
    assert engine.prompt_ids_cached - cached > len(QUESTIONS) * budget // 2  # the answer rounds reused the thinking
    assert not engine.prefix_cache.entries  # every kept row was used; answer rounds keep nothing


def test_models_whose_cache_cannot_be_cut_per_row_prefill_instead(tmp_path):
    """Sliding-window layers keep a rolling cache that rows cannot be cut out of: no prefix cache."""
    import json
    import shutil

    src = chatty_tiny_qwen2(tmp_path / "tiny")
    dst = tmp_path / "sliding"
    shutil.copytree(src, dst)
    config = json.loads((dst / "config.json").read_text())
    config.update(
        use_sliding_window=True,
        sliding_window=8,
        max_window_layers=0,
        layer_types=["sliding_attention"] * config["num_hidden_layers"],
    )
    (dst / "config.json").write_text(json.dumps(config))
    sliding = load_engine("hf", pretrained=str(dst), batch_size=4, progress=False, dtype="float32")
    assert sliding.prefix_cache is None and sliding.round_size is None
    first = budget_run(sliding, 30, 1)
    assert sliding.prompt_ids_cached == 0 and sliding.prompt_ids_prefilled > 0
    assert [key(t) for t in budget_run(sliding, 30, 1)] == [key(t) for t in first]


def test_load_engine_names():
    from m1_harness.thinking.engines import resolve_engine_name

    assert resolve_engine_name("hf") == "hf"
    assert resolve_engine_name("auto") == ("vllm" if torch.cuda.is_available() and _has_vllm() else "hf")
    with pytest.raises(ValueError, match="choose one of auto, hf, vllm"):
        load_engine("tgi", pretrained="x")


def _has_vllm():
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


def test_resume_after_crash_on_the_tiny_model(engine, tmp_path):
    class Crash(Exception):
        pass

    class CrashAfter(Engine):
        """The real engine, killed at its third generate call (mid-way through the thinking rounds)."""

        def __init__(self, inner, n):
            self.inner, self.n, self.calls = inner, n, 0
            self.tokenizer, self.max_model_len, self.eos_token_ids = (
                inner.tokenizer,
                inner.max_model_len,
                inner.eos_token_ids,
            )

        def generate(self, reqs):
            self.calls += 1
            if self.calls == self.n:
                raise Crash
            return self.inner.generate(reqs)

    cache = TraceCache(tmp_path / "c.sqlite", "tiny")
    with pytest.raises(Crash):
        budget_run(CachingEngine(CrashAfter(engine, 3), cache, chunk_size=2), 60, 2)
    reopened = TraceCache(tmp_path / "c.sqlite", "tiny")
    resumed = budget_run(CachingEngine(engine, reopened, chunk_size=2), 60, 2)
    assert [key(t) for t in resumed] == [key(t) for t in budget_run(engine, 60, 2)]
    assert reopened.hits == 4  # the two chunks of 2 stored before the crash were not regenerated


@pytest.mark.parametrize("grid", [[(64, 2), (64, 0), (30, 1), (8, 2)], [(40, 1), (39, 1), (12, 0)]])
def test_sweep_probes_make_the_other_settings_pure_replays(engine, tmp_path, grid):
    """The largest setting's run with the rest of the grid as probes: every other setting is then
    served whole by the trace cache (no engine call) and equals a fresh run token for token."""
    engine.prefix_cache.clear()
    tok = engine.tokenizer
    cache = TraceCache(tmp_path / "c.sqlite", "tiny", {"temperature": 0})
    (b, f), rest = grid[0], grid[1:]
    reqs = [BudgetRequest(tok.encode(p, add_special_tokens=False), b, f, 24, ["\n\n"]) for p in prompts(engine)]
    largest = BudgetForcer(CachingEngine(engine, cache), PRESETS["m1"]).run(reqs, probes=rest)
    assert [key(t) for t in largest] == [key(t) for t in budget_run(engine, b, f)]
    assert sum(t.probe_tokens["generated_tokens"] for t in largest) > 0
    misses = cache.misses
    for b, f in rest:
        replay = budget_run(CachingEngine(engine, cache), b, f)
        assert cache.misses == misses
        assert all(sum(sum(v) for v in t.round_tokens.values()) == 0 for t in replay)
        assert [key(t) for t in replay] == [key(t) for t in budget_run(engine, b, f)]
