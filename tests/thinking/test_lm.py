"""The lm-eval model ``m1_budget``: arguments, chat templating, s1 aliases, trace files, cache, lm-eval."""

import json
import os
from pathlib import Path

import pytest
import torch
from lm_eval.api.instance import Instance
from m1tiny import QUESTIONS

from m1_harness.thinking.lm import M1BudgetLM

FAST = dict(engine="hf", dtype="float32", batch_size=4)


@pytest.fixture(scope="module")
def tiny(chatty_tiny):
    return chatty_tiny


@pytest.fixture(scope="module")
def lm(tiny, tmp_path_factory):
    d = tmp_path_factory.mktemp("lm")
    return M1BudgetLM(
        pretrained=tiny,
        thinking_budget=40,
        forcing=1,
        trace_path=str(d / "t.jsonl"),
        cache_dir=str(d / "cache"),
        **FAST,
    )


def inst(text, i=0, **gen):
    gen = {"until": ["\n\n"], "max_gen_toks": 16, **gen}
    return Instance("generate_until", {}, (text, gen), i, ("medqa", i, 1))


def test_unknown_and_ill_typed_args_list_the_valid_ones():
    with pytest.raises(
        ValueError, match="(?s)unknown model_args \\['thinking_budgit'\\].*thinking_budget \\(int\\|auto"
    ):
        M1BudgetLM(pretrained="x", thinking_budgit=5)
    with pytest.raises(
        ValueError, match="^m1_budget: thinking_budget='lots' is not valid: give a whole number >= 0, or auto$"
    ):
        M1BudgetLM(pretrained="x", thinking_budget="lots")
    with pytest.raises(ValueError, match="forcing=1.5"):
        M1BudgetLM(pretrained="x", forcing=1.5)
    with pytest.raises(ValueError, match="pretrained=PATH_OR_HUB_ID is required"):
        M1BudgetLM()
    with pytest.raises(ValueError, match="markers='qwen'; presets: m1, think_tags"):
        M1BudgetLM(pretrained="x", markers="qwen")
    with pytest.raises(ValueError, match="prefix_cache='maybe' is not valid: give true or false"):
        M1BudgetLM(pretrained="x", prefix_cache="maybe")


def test_a_model_path_that_does_not_exist_says_so(tmp_path, monkeypatch):
    """Before any load: transformers would call it an invalid Hugging Face repo id."""
    missing = tmp_path / "models" / "m1-7b"
    with pytest.raises(ValueError) as err:
        M1BudgetLM(pretrained=str(missing))
    assert str(err.value) == (
        f"m1_budget: pretrained={str(missing)!r}: no model directory exists at that path ({missing}). "
        "Pass the folder that holds the model's config.json, or a Hugging Face id such as org/name."
    )
    monkeypatch.chdir(tmp_path)
    (tmp_path / "weights.gguf").write_text("")
    with pytest.raises(ValueError) as err:
        M1BudgetLM(pretrained="./weights.gguf")
    assert str(err.value).startswith(
        f"m1_budget: pretrained='./weights.gguf': it is a file, not a model directory ({tmp_path / 'weights.gguf'})."
    )
    with pytest.raises(
        ValueError, match="^m1_budget: pretrained='runs/ckpt/final': no model directory exists at that path"
    ):
        M1BudgetLM(pretrained="runs/ckpt/final")
    # org/name that is no local folder stays a Hub id: the check lets it through to the next argument check
    with pytest.raises(ValueError, match="^m1_budget: markers='x'"):
        M1BudgetLM(pretrained="UCSC-VLAA/m1-7B-23K", markers="x")


@pytest.mark.parametrize(
    "model,expected",
    [
        (
            "m1_budget",
            "m1_budget applies the model's chat template to every prompt itself "
            "(lm-eval's --apply_chat_template is not needed)",
        ),
        ("hf", "appears to be an instruct or chat variant but chat template is not applied."),
        ("loaded m1_budget", None),  # m1-harness sweep, once per setting: said nowhere
    ],
)
def test_chat_template_note_is_true_for_m1_budget_only(model, expected):
    """lm-eval logs its chat-template warning, then refuses the empty task list: no model is loaded."""
    import logging

    import lm_eval.evaluator

    from m1_harness import _autoload

    _autoload.note_chat_template()
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("lm_eval.evaluator")
    logger.addHandler(handler)
    try:
        with pytest.raises(ValueError, match="No tasks specified"):
            # this length makes lm-eval wrap its warning inside "chat template is not applied"
            lm_eval.evaluator.simple_evaluate(
                model=M1BudgetLM.__new__(M1BudgetLM) if model == "loaded m1_budget" else model,
                model_args=f"pretrained=org/{'x' * 30}-instruct",
                tasks=[],
            )
    finally:
        logger.removeHandler(handler)
    notes = [
        (r.levelname, " ".join(r.getMessage().split()))
        for r in records
        if "chat template" in " ".join(r.getMessage().split())
    ]
    if expected is None:
        assert notes == []
        return
    assert len(notes) == 1 and expected in notes[0][1]
    assert model == "m1_budget" or "is not\n" in records[0].getMessage()
    assert notes[0][0] == ("INFO" if model == "m1_budget" else "WARNING")


def test_loglikelihood_is_a_clear_error():
    with pytest.raises(NotImplementedError, match="generative"):
        M1BudgetLM.loglikelihood(None, [])


def test_generate_until_returns_whole_traces_and_writes_records(lm):
    reqs = [inst(q, i) for i, q in enumerate(QUESTIONS)]
    out = lm.generate_until(reqs)
    assert all(o.startswith("<|im_start|>think\n") and "\n<|im_start|>answer\n" in o for o in out)
    recs = [json.loads(line) for line in Path(lm.args["trace_path"]).read_text().splitlines()]
    assert [r["doc_id"] for r in recs] == list(range(len(QUESTIONS))) and recs[0]["task"] == "medqa"
    for r, o in zip(recs, out):
        assert r["thinking_tokens"] == r["generated_tokens"] + r["forced_tokens"] <= 40
        assert ("Final Answer:" in o) == r["hit_budget"] and r["answer_tokens"] <= 16
        assert {"forcing_rounds", "finish_reasons", "wall_time", "answer_finish_reason"} <= set(r)
        assert r["wall_time"] > 0
    assert any(r["forcing_rounds"] for r in recs)
    for r in recs:  # engine work per call: thinking rounds, then the answer
        rt = r["round_tokens"]
        assert len(rt["context_tokens"]) == len(rt["cached_tokens"]) == len(rt["generated_tokens"]) == r["rounds"] + 1
        assert rt["context_tokens"][0] == r["prompt_tokens"]
        assert all(c < n for c, n in zip(rt["cached_tokens"][1:], rt["context_tokens"][1:]))
    assert all(
        lm.summary[k] == sum(sum(r["round_tokens"][k]) for r in recs)
        for k in ("context_tokens", "cached_tokens", "generated_tokens")
    )
    assert lm.summary["cached_tokens"] > 0
    # the same prompt templated by lm-eval (apply_chat_template) is not templated twice
    templated = lm.apply_chat_template([{"role": "user", "content": QUESTIONS[0]}])
    assert lm.generate_until([inst(templated)]) == out[:1]


def test_prefix_cache_off_gives_the_same_traces(lm, tiny, tmp_path):
    reqs = [inst(q, i) for i, q in enumerate(QUESTIONS)]
    off = M1BudgetLM(
        pretrained=tiny,
        thinking_budget=40,
        forcing=1,
        prefix_cache="false",
        cache="off",
        trace_path=str(tmp_path / "t"),
        **FAST,
    )
    assert off.engine.prefix_cache is None and lm.engine.prefix_cache is not None
    assert off.generate_until(reqs) == lm.generate_until(reqs)


def test_reconfigure_changes_settings_without_reloading(tiny, tmp_path):
    one = M1BudgetLM(pretrained=tiny, thinking_budget=40, cache="off", trace_path=str(tmp_path / "a.jsonl"), **FAST)
    engine = one.engine
    one.reconfigure(thinking_budget="6", forcing=0, trace_path=str(tmp_path / "b.jsonl"))
    one.generate_until([inst(QUESTIONS[1])])
    assert one.engine is engine and one.traces[0]["thinking_budget"] == 6
    assert (tmp_path / "b.jsonl").is_file() and not (tmp_path / "a.jsonl").exists()
    with pytest.raises(
        ValueError,
        match="\\['engine'\\] cannot change without reloading the model; "
        "reconfigure takes thinking_budget, forcing, forcing_str",
    ):
        one.reconfigure(engine="vllm")
    with pytest.raises(ValueError, match="forcing=-1 is not valid: give a whole number >= 0"):
        one.reconfigure(forcing=-1)


def test_s1_aliases_and_gen_kwargs(lm):
    (o,) = lm.generate_until([inst(QUESTIONS[1], max_tokens_thinking=6, thinking_n_ignore=0)])
    assert lm.traces[0]["thinking_budget"] == 6 and lm.traces[0]["thinking_tokens"] <= 6
    assert lm.traces[0]["forcing_rounds"] == 0
    with pytest.raises(ValueError, match="unknown gen_kwargs \\['beams'\\]"):
        lm.generate_until([inst(QUESTIONS[1], beams=2)])


def test_cache_serves_a_smaller_budget_and_refuses_sampling_when_on(tiny, tmp_path):
    args = dict(pretrained=tiny, cache_dir=str(tmp_path / "c"), trace_path=str(tmp_path / "t"), **FAST)
    reqs = [inst(q, i) for i, q in enumerate(QUESTIONS)]
    M1BudgetLM(thinking_budget=64, forcing=2, **args).generate_until(reqs)
    small = M1BudgetLM(thinking_budget=20, forcing=1, **args)
    cached = small.generate_until(reqs)
    assert small._cache.misses <= len(reqs)  # only answers were generated
    fresh = M1BudgetLM(thinking_budget=20, forcing=1, cache="off", **args).generate_until(reqs)
    assert cached == fresh
    with pytest.raises(ValueError) as err:
        M1BudgetLM(thinking_budget=20, cache="on", seed="none", **args).generate_until([inst("hi", temperature=0.7)])
    assert str(err.value) == (
        "m1_budget: cache=on with seed=none (unseeded sampling, temperature=0.7): the trace cache holds sampled "
        "traces only when each has its own seed. Pass seed=S, or cache=off (or cache=auto) to sample unseeded."
    )


@pytest.mark.slow
def test_simple_evaluate_medqa(tiny_lm_eval_run):
    """m1_budget by name through lm_eval.simple_evaluate (the shared run of conftest: 3 items, 2 samples each)."""
    res = tiny_lm_eval_run.results
    assert "acc,none" in res["results"]["medqa"]
    assert res["n-samples"]["medqa"]["effective"] == 3
    resp = res["samples"]["medqa"][0]["resps"][0][0]
    assert resp.startswith("<|im_start|>think\n") and "<|im_start|>answer\n" in resp
    assert len(tiny_lm_eval_run.records) == 3 * 2
    assert all(r["thinking_tokens"] <= 24 and r["answer_tokens"] <= 16 for r in tiny_lm_eval_run.records)


def test_unseeded_sampling_bypasses_the_cache_when_auto(tiny, tmp_path):
    lm = M1BudgetLM(
        pretrained=tiny,
        thinking_budget=40,
        forcing=1,
        trace_path=str(tmp_path / "t.jsonl"),
        cache_dir=str(tmp_path / "cache"),
        seed="none",
        **FAST,
    )
    lm.generate_until([inst(QUESTIONS[1])])
    rows = lambda: lm._cache.db.execute("SELECT count(*) FROM gen").fetchone()[0]  # noqa: E731
    before = (rows(), lm._cache.hits, lm._cache.misses)
    (o,) = lm.generate_until([inst(QUESTIONS[2], do_sample=True, temperature=0.8)])
    assert o.startswith("<|im_start|>think\n") and lm.traces[0]["temperature"] == 0.8
    assert (lm.traces[0]["sample"], lm.traces[0]["sample_seed"]) == (0, None)  # unseeded: no seed to record
    assert (rows(), lm._cache.hits, lm._cache.misses) == before  # neither read nor written
    lm.generate_until([inst(QUESTIONS[2])])
    assert lm.engine.temperature == 0.0  # greedy again for greedy requests
    assert lm._cache.hits + lm._cache.misses > before[1] + before[2]  # and through the cache


def test_another_model_or_changed_weights_miss_the_cache(tiny, tmp_path):
    import shutil

    args = dict(thinking_budget=16, cache_dir=str(tmp_path / "c"), trace_path=str(tmp_path / "t"), **FAST)
    reqs = [inst(q, i) for i, q in enumerate(QUESTIONS[:3])]
    first = M1BudgetLM(pretrained=tiny, **args)
    first.generate_until(reqs)
    again = M1BudgetLM(pretrained=tiny, **args)
    again.generate_until(reqs)
    assert (again._cache.hits, again._cache.misses) == (first._cache.misses, 0)  # the control: all served
    copy = tmp_path / "copy"
    shutil.copytree(tiny, copy)
    other = M1BudgetLM(pretrained=str(copy), **args)  # same weights, another model folder
    other.generate_until(reqs)
    assert other._cache.hits == 0
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(copy)
    with torch.no_grad():
        model.lm_head.weight.mul_(1.01)
    model.save_pretrained(copy)  # the same folder, changed weights
    changed = M1BudgetLM(pretrained=str(copy), **args)
    changed.generate_until(reqs)
    assert changed._cache.hits == 0


@pytest.mark.subprocess
def test_a_hub_model_is_keyed_by_the_commit_it_resolved_to(tmp_path):
    """A model updated on the Hub under the same id must not be served its old traces."""
    import subprocess
    import sys

    repo = tmp_path / "hub" / "models--org--tiny"
    for commit in ("a" * 40, "b" * 40):
        (repo / "snapshots" / commit).mkdir(parents=True)
        (repo / "snapshots" / commit / "config.json").write_text("{}")
    (repo / "refs").mkdir()
    script = (
        "from m1_harness.thinking.engines.base import weights_identity as m; print(m('hf', 'org/tiny', 'auto')); "
        "print(m('hf', 'org/absent', 'auto'))"
    )
    env = dict(os.environ, HF_HUB_CACHE=str(tmp_path / "hub"))
    ids = []
    for commit in ("a" * 40, "b" * 40):
        (repo / "refs" / "main").write_text(commit)
        out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
        ids.append(out.stdout.splitlines())
    assert ids == [[f"hf|org/tiny|auto|rev={'a' * 40}", "None"], [f"hf|org/tiny|auto|rev={'b' * 40}", "None"]]


def test_default_trace_dir_is_beside_output_path(monkeypatch, tmp_path):
    from m1_harness.thinking.lm import _default_trace_dir

    monkeypatch.setattr("sys.argv", ["lm_eval", "--output_path", str(tmp_path / "res.json")])
    assert _default_trace_dir() == tmp_path / "m1_traces"
    monkeypatch.setattr("sys.argv", ["lm_eval", f"--output_path={tmp_path}"])
    assert _default_trace_dir() == tmp_path / "m1_traces"
    monkeypatch.setattr("sys.argv", ["pytest"])
    assert _default_trace_dir().name == "m1_traces"


def test_a_bad_output_location_fails_before_the_model_loads(tiny, tmp_path, monkeypatch):
    """A bad trace_path was found only after every request had been generated."""
    from m1_harness.paths import OutputError
    from m1_harness.thinking import lm as lm_module

    def no_load(*a, **k):
        raise AssertionError("the model was loaded before the output locations were checked")

    monkeypatch.setattr(lm_module, "load_engine", no_load)
    blocker = tmp_path / "file.txt"
    blocker.write_text("")
    with pytest.raises(OutputError) as err:
        M1BudgetLM(pretrained=tiny, trace_path=str(blocker / "t.jsonl"), cache="off", **FAST)
    assert str(err.value) == (
        f"trace_path={str(blocker)!r} cannot be written ({str(blocker)!r} is a file, not a "
        "folder): choose a folder you can write to"
    )
    with pytest.raises(OutputError, match="^cache_dir=.*cannot be written"):
        M1BudgetLM(pretrained=tiny, trace_path=str(tmp_path / "t"), cache_dir=str(blocker / "c"), **FAST)
    monkeypatch.setattr("sys.argv", ["lm_eval", "--output_path", str(blocker / "out")])
    with pytest.raises(OutputError, match="^--output_path=.*file.txt/out' cannot be written"):
        M1BudgetLM(pretrained=tiny, trace_path=str(tmp_path / "t"), cache="off", **FAST)


def test_trace_records_are_durable_as_requests_finish(tiny, tmp_path):
    """A run killed part-way keeps the records of every request that had finished."""
    path = tmp_path / "t.jsonl"
    lm2 = M1BudgetLM(pretrained=tiny, thinking_budget=12, trace_path=str(path), cache="off", **dict(FAST, batch_size=2))
    generate = lm2.engine.generate

    def crash_in_second_group(reqs):
        if path.is_file() and path.read_text().count("\n") >= 2:
            raise KeyboardInterrupt
        return generate(reqs)

    lm2.engine.generate = crash_in_second_group
    with pytest.raises(KeyboardInterrupt):
        lm2.generate_until([inst(q, i) for i, q in enumerate(QUESTIONS[:4])])
    recs = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(recs) == 2 and all(r["answer_finish_reason"] for r in recs)
    lm2.engine.generate = generate
    lm2.generate_until([inst(q, i) for i, q in enumerate(QUESTIONS[:4])])
    again = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["doc_id"] for r in again[2:]] == [0, 1, 2, 3]  # in request order, after the earlier records


def test_clamped_budgets_and_overlong_prompts_are_recorded_and_said(tiny, tmp_path, caplog):
    """Asked 4096 with a 64-token context: each record says what really ran, and the log says so once."""
    lm2 = M1BudgetLM(
        pretrained=tiny,
        thinking_budget=4096,
        answer_budget=8,
        max_model_len=64,
        trace_path=str(tmp_path / "t.jsonl"),
        cache="off",
        **FAST,
    )
    long_prompt = " ".join(["fever"] * 80)
    with caplog.at_level("WARNING", logger="m1_harness.thinking.lm"):
        lm2.generate_until([inst(QUESTIONS[0], 0, max_gen_toks=8), inst(long_prompt, 1, max_gen_toks=8)])
    short, long = lm2.traces
    prompt = short["prompt_tokens"]
    assert (
        short["budget_clamped"]
        and short["thinking_budget"]
        == 64 - prompt - len(lm2.tokenizer.encode("\n<|im_start|>answer\nFinal Answer:", add_special_tokens=False)) - 1
    )
    assert short["requested_thinking_budget"] == 4096 and not short["prompt_too_long"]
    assert short["model"] == long["model"] == str(tiny)  # analysis names traces by it, not by what lies beside
    assert long["prompt_too_long"] and long["thinking_tokens"] == 0 and long["answer_tokens"] == 0
    assert lm2.summary["budget_clamped"] == 2 and lm2.summary["prompt_too_long"] == 1
    text = caplog.text
    assert (
        f"2 of 2 requests ran with a smaller thinking budget than asked (asked 4096, ran 0-{short['thinking_budget']}): "
        "prompt + answer budget leave no more room in max_model_len=64."
    ) in text
    assert "1 of 2 prompts leave no room for an answer in max_model_len=64" in text
    assert text.count("smaller thinking budget") == 1
