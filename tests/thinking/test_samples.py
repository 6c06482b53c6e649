"""Seeded sampling on the transformers engine and through m1_budget (``samples=K``): every sampled call
is a function of its context and seed, so batching, budgets, forcing rounds, probes and the trace
cache replay a sample token for token, as they replay greedy decoding."""

import hashlib
import json

import pytest
from lm_eval.api.instance import Instance
from m1tiny import QUESTIONS

from m1_harness.thinking.budget import BudgetForcer
from m1_harness.thinking.engines import load_engine
from m1_harness.thinking.engines.base import GenRequest
from m1_harness.thinking.lm import M1BudgetLM
from m1_harness.thinking.markers import PRESETS
from m1_harness.thinking.request import BudgetRequest
from m1_harness.thinking.seeds import derive, sample_seed
from m1_harness.thinking.tracecache import CachingEngine, TraceCache

TEMP, TOP_P = 1.0, 0.95
SAMPLED = {"temperature": TEMP, "top_p": TOP_P}


@pytest.fixture(scope="module")
def tiny(chatty_tiny):
    return chatty_tiny


@pytest.fixture(scope="module")
def engine(tiny):
    eng = load_engine("hf", pretrained=tiny, batch_size=4, progress=False, dtype="float32")
    eng.set_sampling(TEMP, TOP_P)
    return eng


def prompt_ids(tok, q):
    text = tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
    return tok.encode(text, add_special_tokens=False)


def budget_run(engine, budget, forcing, seeds, questions=QUESTIONS):
    reqs = [
        BudgetRequest(prompt_ids(engine.tokenizer, q), budget, forcing, 16, ["\n\n"], seed=s)
        for q, s in zip(questions, seeds)
    ]
    return [
        (t.thinking_ids, t.forced_positions, t.finish_reasons, t.hit_budget, t.answer_ids, t.text)
        for t in BudgetForcer(engine, PRESETS["m1"]).run(reqs)
    ]


SEEDS = [derive(7, "t", i, 0) for i in range(len(QUESTIONS))]


def test_a_seeded_call_ignores_its_batch_and_a_shorter_call_is_its_cut(engine):
    tok = engine.tokenizer
    ids = [prompt_ids(tok, q) + tok.encode("<|im_start|>think\n") for q in QUESTIONS]
    reqs = [GenRequest(i, 40, stop_token_ids=[1, 2], seed=s) for i, s in zip(ids, SEEDS)]
    batch = engine.generate(reqs)
    assert {r.finish_reason for r in batch} == {"stop", "length"}  # both kinds of end are pinned below
    assert [engine.generate([r])[0] for r in reqs] == batch  # alone (and from the prefix cache) == in a batch
    assert engine.generate(reqs[::-1]) == batch[::-1]  # another batch composition
    short = engine.generate([GenRequest(r.prompt_ids, 7, stop_token_ids=[1, 2], seed=r.seed) for r in reqs])
    assert [s.token_ids for s in short] == [b.token_ids[:7] for b in batch]
    other = engine.generate([GenRequest(r.prompt_ids, 40, stop_token_ids=[1, 2], seed=r.seed + 1) for r in reqs])
    assert all(o.token_ids != b.token_ids for o, b in zip(other, batch))  # another seed, another sample


def test_a_seeded_sampled_trace_is_the_same_alone_or_batched(engine):
    batched = budget_run(engine, 60, 2, SEEDS)
    assert any(t[1] for t in batched) and any(t[3] for t in batched)  # forced rounds and budget cuts happened
    alone = [budget_run(engine, 60, 2, [s], [q])[0] for q, s in zip(QUESTIONS, SEEDS)]
    assert alone == batched


@pytest.mark.parametrize("budget,forcing", [(8, 2), (30, 1), (64, 0)])
def test_a_seeded_sampled_sweep_through_the_cache_equals_independent_runs(engine, tmp_path, budget, forcing):
    cache = TraceCache(tmp_path / "c.sqlite", "tiny")
    budget_run(CachingEngine(engine, cache, decoding=SAMPLED), 96, 3, SEEDS)
    before = cache.misses
    cached = budget_run(CachingEngine(engine, cache, decoding=SAMPLED), budget, forcing, SEEDS)
    assert cache.misses - before <= len(QUESTIONS)  # only the answer phase was generated
    fresh = budget_run(engine, budget, forcing, SEEDS)
    assert cached == fresh
    full = budget_run(engine, 96, 3, SEEDS)
    if forcing == 0:  # the prefix property through the budget loop: budget b's thinking is budget 96's, cut
        assert [f[0][: len(c[0])] for f, c in zip(full, fresh)] == [c[0] for c in fresh]


def inst(text, i, **gen):
    gen = {"until": ["\n\n"], "max_gen_toks": 16, "temperature": TEMP, "top_p": TOP_P, **gen}
    return Instance("generate_until", {}, (text, gen), i, ("medqa", i, 1))


def m1(tiny, tmp_path, **kw):
    args = dict(
        pretrained=tiny,
        engine="hf",
        dtype="float32",
        batch_size=4,
        thinking_budget=40,
        forcing=1,
        trace_path=str(tmp_path / "t.jsonl"),
        cache_dir=str(tmp_path / "c"),
        seed=7,
    )
    return M1BudgetLM(**{**args, **kw})


def test_k_samples_differ_replay_exactly_and_each_gets_a_record(tiny, tmp_path, capsys):
    reqs = [inst(q, i) for i, q in enumerate(QUESTIONS[:2])]
    lm = m1(tiny, tmp_path, samples=3, cache="off")
    out = lm.generate_until(reqs)
    recs = [json.loads(line) for line in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert recs == lm.traces and len(recs) == 6
    assert [(r["doc_id"], r["sample"]) for r in recs] == [(i, j) for i in range(2) for j in range(3)]
    assert [r["sample_seed"] for r in recs] == [derive(7, "medqa", i, j) for i in range(2) for j in range(3)]
    assert all((r["temperature"], r["top_p"]) == (TEMP, TOP_P) for r in recs)
    assert out == [recs[0]["text"], recs[3]["text"]]  # lm-eval gets sample 0
    assert len({r["text"] for r in recs}) == 6  # temperature 1: every sample its own trace
    err = capsys.readouterr().err
    assert "lm-eval's table scores sample 0 of 3; maj@k / pass@k / mean@k: m1-harness sweep --samples / report" in err
    assert (lm.summary["requests"], lm.summary["samples"]) == (2, 3)
    settings = lm.get_model_info()["m1_budget"]["settings"]
    assert {k: settings[k] for k in ("samples", "seed", "temperature", "top_p")} == {
        "samples": 3,
        "seed": 7,
        "temperature": TEMP,
        "top_p": TOP_P,
    }
    again = m1(tiny, tmp_path / "again", samples=3, cache="off")
    assert again.generate_until(reqs[::-1]) == out[::-1]
    assert [r["text"] for r in again.traces] == [r["text"] for r in recs[3:] + recs[:3]]
    again.reconfigure(samples=2)  # a sample's seed does not depend on K: samples=2 are the first two of 3
    again.generate_until(reqs)
    assert [r["text"] for r in again.traces] == [r["text"] for r in recs if r["sample"] < 2]


def test_samples_need_sampling_and_a_positive_count(tiny, tmp_path):
    lm = m1(tiny, tmp_path, samples=2)
    with pytest.raises(ValueError) as err:
        lm.generate_until([inst(QUESTIONS[0], 0, temperature=0.0)])
    assert str(err.value) == (
        "m1_budget: samples=2 needs sampling: under greedy decoding (do_sample=false or temperature 0) the 2 samples "
        "would be one trace 2 times. Pass do_sample=true and a temperature > 0 (lm_eval --gen_kwargs "
        "do_sample=true,temperature=0.6,top_p=0.95; the m1 tasks set do_sample=false), or samples=1."
    )
    with pytest.raises(ValueError, match=r"^m1_budget: samples=0: give at least 1 trace per request$"):
        m1(tiny, tmp_path, samples=0)
    with pytest.raises(ValueError, match=r"^m1_budget: samples=0: give at least 1 trace per request$"):
        lm.reconfigure(samples=0)


def test_greedy_records_sample_0_without_a_seed(tiny, tmp_path):
    lm = m1(tiny, tmp_path, cache="off")
    lm.generate_until([inst(QUESTIONS[0], 0, temperature=0.0)])
    assert (lm.traces[0]["sample"], lm.traces[0]["sample_seed"]) == (0, None)


def test_sampled_sweep_probes_make_smaller_settings_a_pure_replay(tiny, tmp_path):
    reqs = [inst(q, i) for i, q in enumerate(QUESTIONS[:3])]
    big = m1(tiny, tmp_path, samples=2, thinking_budget=48, forcing=2)
    big.reconfigure(probes=[(20, 1), (32, 0)])
    big.generate_until(reqs)
    assert all(sum(r["probe_tokens"].values()) > 0 for r in big.traces)  # every sample got its probes
    for budget, forcing in [(20, 1), (32, 0)]:
        small = m1(tiny, tmp_path, samples=2, thinking_budget=budget, forcing=forcing)
        cached = small.generate_until(reqs)
        assert small._cache.misses == 0  # thinking cut from the run, answers from its probes
        fresh = m1(tiny, tmp_path / f"fresh{budget}", samples=2, thinking_budget=budget, forcing=forcing, cache="off")
        assert cached == fresh.generate_until(reqs)
        assert [r["text"] for r in small.traces] == [r["text"] for r in fresh.traces]


def test_the_sample_seed_formula():
    assert sample_seed(7, "medqa", 3, 1, [1, 2]) == derive(7, "medqa", 3, 1)
    assert derive(7, "medqa", 3, 1) == int.from_bytes(hashlib.sha256(b'[7, "medqa", 3, 1]').digest()[:8], "big") >> 1
    no_ids = sample_seed(7, None, None, 1, [1, 2])
    assert no_ids == derive(7, "prompt", hashlib.sha256(b"[1, 2]").hexdigest(), 1)
    assert no_ids != sample_seed(7, None, None, 1, [1, 3]) and no_ids != sample_seed(7, None, None, 0, [1, 2])


@pytest.mark.slow
def test_lm_eval_scores_sample_0_and_records_the_sampling_settings(tiny_lm_eval_run):
    """The shared run of conftest (medqa, 3 items, samples=2, seed=3, sampled at 0.7 / 0.9)."""
    res, recs = tiny_lm_eval_run.results, tiny_lm_eval_run.records
    settings = res["config"]["m1_budget"]["settings"]
    assert {k: settings[k] for k in ("samples", "seed", "temperature", "top_p")} == {
        "samples": 2,
        "seed": 3,
        "temperature": 0.7,
        "top_p": 0.9,
    }
    assert sorted((r["doc_id"], r["sample"]) for r in recs) == [(d, j) for d in range(3) for j in range(2)]
    assert all(r["sample_seed"] == derive(3, "medqa", r["doc_id"], r["sample"]) for r in recs)
    by_doc = {s["doc_id"]: s["resps"][0][0] for s in res["samples"]["medqa"]}
    assert by_doc == {r["doc_id"]: r["text"] for r in recs if r["sample"] == 0}  # lm-eval scored sample 0
