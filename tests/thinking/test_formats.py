"""Thinking formats: each preset pinned token for token on the scripted engine with a tokenizer that
mimics its family (tests/helpers/families.py), scoring of each preset's answer part, markers=auto,
chat-template arguments, and one real run through the lm_eval CLI per preset."""

from __future__ import annotations

import json
import logging
import sys

import pytest
import torch
from families import ANSWER, FAMILIES, OPTIONS, family_model
from transformers import AutoTokenizer

from m1_harness.scoring import Score, score
from m1_harness.thinking.budget import BudgetForcer
from m1_harness.thinking.engines.scripted import Script, ScriptedEngine
from m1_harness.thinking.markers import PRESETS, Markers, detect
from m1_harness.thinking.request import BudgetRequest

FAST = dict(engine="hf", dtype="float32", cache="off")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("families")
    return {family: family_model(root, family) for family in FAMILIES}


def tok_of(models, family):
    return AutoTokenizer.from_pretrained(models[family])


def special_counts(tok, text: str, ids: list[int]) -> list[tuple[str, int, int]]:
    """Each special token of the tokenizer: (token, times in the text, times as one id in ids)."""
    return [
        (s, text.count(s), ids.count(tok.convert_tokens_to_ids(s)))
        for s in tok.all_special_tokens + [str(t) for t in tok.added_tokens_decoder.values()]
        if s in text
    ]


# -- the answer part scoring reads -----------------------------------------------------------------
@pytest.mark.parametrize("cut", [False, True])
@pytest.mark.parametrize("name", list(PRESETS))
def test_scoring_reads_each_presets_answer_part(name, cut):
    m = PRESETS[name]
    text = m.think_start + "Maybe \\boxed{B}: the answer is B." + m.answer_prefix(cut) + ANSWER
    assert score(text, OPTIONS, "A") == Score("A", "boxed", True)
    # a box written while thinking never counts: with nothing after the opening, nothing is chosen
    assert score(m.think_start + "\\boxed{A}" + m.answer_prefix(cut=False), OPTIONS, "A") == Score(None, "none", False)


def test_scoring_reads_raw_harmony_and_huatuo_outputs():
    harmony = (
        "<|channel|>analysis<|message|>Asthma? \\boxed{B}<|end|><|start|>assistant<|channel|>final<|message|>Pneumonia"
    )
    assert score(harmony, OPTIONS, "A") == Score("A", "option_text", True)
    huatuo = "## Thinking\n\nThe answer is B, Asthma.\n\n## Final Response\n\nThe answer is A"
    assert score(huatuo, OPTIONS, "A") == Score("A", "answer_is", True)


# -- every splice, token for token, on each family's tokenizer ------------------------------------
FAMILY_PRESETS = [f for f in FAMILIES if f != "m1"]


@pytest.mark.parametrize("family", FAMILY_PRESETS)
def test_scripted_engine_pins_each_splice(models, family):
    tok, m = tok_of(models, family), PRESETS[family]
    end = m.think_end[0]
    rendered = tok.apply_chat_template([{"role": "user", "content": "Q?"}], tokenize=False, add_generation_prompt=True)
    prompt, state = m.template_state(rendered)
    assert state == ("open" if family == "deepseek_r1" else None)  # R1's template opened thinking itself
    first = "abc\n\n" if family == "huatuo_o1" else "abc"  # HuatuoGPT-o1 writes a blank line before its heading
    answer = ANSWER + tok.eos_token  # the model ends its turn; the trace leaves the EOS out
    scripts = {prompt: Script([first + end, "de" + end], answer), "Q2": Script(["a b c d e f" + end], answer)}
    engine = ScriptedEngine(
        scripts,
        tokenizer=tok,
        think_start=m.think_start,
        filler="z",
        answer_markers=(m.answer_prefix(False), m.answer_prefix(True)),
    )
    forcer = BudgetForcer(engine, m)
    natural, cut = forcer.run(
        [
            BudgetRequest(tok.encode(prompt, add_special_tokens=False), 100, forcing=1),
            BudgetRequest(tok.encode("Q2", add_special_tokens=False), 3),
        ]
    )
    enc = lambda s: tok.encode(s, add_special_tokens=False)  # noqa: E731

    # think: opened once, stopped by the end marker's single id (or as a string where it is text)
    call = engine.calls[0][0]
    assert call.prompt_ids == enc(prompt) + enc(m.think_start)
    if family == "huatuo_o1":
        assert (list(call.stop_strings), call.stop_token_ids) == (["## Final Response"], [tok.eos_token_id])
    else:
        assert enc(end) == [tok.convert_tokens_to_ids(end)] and list(call.stop_strings) == []
        assert call.stop_token_ids == sorted({tok.eos_token_id, tok.convert_tokens_to_ids(end)})
    # force: the end marker dropped, "\nWait" (or "Wait" after whitespace) spliced as ids
    splice = "Wait" if first.endswith("\n") else "\nWait"
    (pos,), n = natural.forced_positions, len(enc(splice))
    assert natural.forced_counts == [n] and natural.thinking_ids[pos : pos + n] == enc(splice)
    assert tok.decode(natural.thinking_ids[:pos]) == first and tok.decode(natural.thinking_ids[pos + n :]) == "de"
    assert end not in tok.decode(natural.thinking_ids)
    # answer: the family's opening, no budget-cut text
    assert natural.answer_prefix_ids == enc(m.answer_prefix(cut=False))
    assert engine.calls[-1][0].prompt_ids[-len(natural.answer_prefix_ids) :] == natural.answer_prefix_ids
    assert natural.text == m.think_start + first + splice + "de" + m.answer_prefix(cut=False) + ANSWER
    # budget cut after exactly 3 ids: the family's budget-cut text (Qwen3's own, else "Final Answer:")
    three = enc("a b c d e f")[:3]
    assert cut.hit_budget and cut.thinking_ids == three
    assert cut.answer_prefix_ids == enc(m.answer_prefix(cut=True))
    assert cut.text == m.think_start + tok.decode(three) + m.answer_prefix(cut=True) + ANSWER
    # every special token of an opening is one id, never spelled out in bytes
    for ids, text in ((call.prompt_ids, prompt + m.think_start), (cut.answer_prefix_ids, m.answer_prefix(True))):
        assert all(n == k for _, n, k in special_counts(tok, text, ids))
    for t in (natural, cut):
        assert score(t.text, OPTIONS, "A") == Score("A", "boxed", True)


def test_the_budget_cut_texts_are_the_documented_ones():
    assert PRESETS["qwen3"].answer_prefix(cut=True) == (
        "\nConsidering the limited time by the user, I have to give the solution based on the thinking directly "
        "now.\n</think>.\n\n"
    )
    assert {
        n: m.answer_prefix(cut=True)[len(m.answer_prefix(cut=False)) :] for n, m in PRESETS.items() if n != "qwen3"
    } == {n: "Final Answer:" for n in PRESETS if n != "qwen3"}
    assert PRESETS["gpt_oss"].answer_prefix(False) == "<|end|><|start|>assistant<|channel|>final<|message|>"
    assert PRESETS["huatuo_o1"].answer_prefix(False) == "\n\n## Final Response\n\n"
    assert PRESETS["magistral"].answer_prefix(False) == "[/THINK]"


def test_template_state_opens_once_and_turns_a_closed_block_into_no_thinking():
    q = PRESETS["qwen3"]
    assert q.template_state("<|im_start|>assistant\n<think>\n\n</think>\n\n") == ("<|im_start|>assistant\n", "closed")
    assert q.template_state("<|im_start|>assistant\n<think>\n") == ("<|im_start|>assistant\n", "open")
    assert q.template_state("<|im_start|>assistant\n") == ("<|im_start|>assistant\n", None)
    # a closed block is budget 0's own text: think_start + answer_sep + answer_start
    assert q.think_start + q.answer_prefix(False) == "<think>\n\n</think>\n\n"


# -- markers=auto ------------------------------------------------------------------------------------
def test_auto_picks_each_family_and_says_why(models):
    picked = {f: detect(tok_of(models, f), str(models[f])) for f in FAMILIES}
    assert {f: p for f, (p, _) in picked.items()} == {f: f for f in FAMILIES}
    assert picked["qwen3"][1] == "ChatML template with <think> and the enable_thinking switch"
    assert picked["gpt_oss"][1] == "harmony tokens <|channel|> / <|message|>"
    assert picked["m1"][1].startswith("ChatML template without thinking markers of its own")


def test_auto_on_an_unknown_template_is_an_error_listing_presets_and_overrides(models):
    llama = tok_of(models, "huatuo_o1")  # a Llama-3 template: only the name said HuatuoGPT-o1
    expected = (
        "m1_budget: markers=auto cannot tell how /models/llama-3 thinks: its tokenizer has a chat template "
        "with no thinking markers m1_budget knows. Pass markers=PRESET (one of m1, think_tags, huatuo_o1, "
        "qwen3, deepseek_r1, gpt_oss, magistral, phi4_reasoning) or set the markers yourself with "
        "think_start, think_end, answer_start, budget_cut_prefix, budget_cut_text (see "
        "docs/thinking_formats.md)."
    )
    with pytest.raises(ValueError) as err:
        detect(llama, "/models/llama-3")
    assert str(err.value) == expected
    llama.chat_template = None
    with pytest.raises(ValueError, match="its tokenizer has no chat template"):
        detect(llama, "/models/llama-3")


# -- m1_budget: auto, chat-template arguments, a template that opens or closes thinking ------------
def test_m1_budget_auto_enable_thinking_and_template_args(models, tmp_path, caplog, capsys):
    from lm_eval.api.instance import Instance

    from m1_harness.thinking.lm import M1BudgetLM

    def lm(family, **kw):
        return M1BudgetLM(
            pretrained=str(models[family]),
            markers="auto",
            trace_path=str(tmp_path / "t.jsonl"),
            thinking_budget=6,
            answer_budget=3,
            **FAST,
            **kw,
        )

    req = Instance("generate_until", {}, ("Q?", {"until": ["\n\n"]}), 0, ("medqa", 0, 1))
    qwen = lm("qwen3", enable_thinking="false")
    assert "m1_budget: markers=auto chose qwen3: ChatML template with <think>" in capsys.readouterr().err
    with caplog.at_level(logging.WARNING, logger="m1_harness.thinking.lm"):
        (text,) = qwen.generate_until([req])
    assert text.startswith("<think>\n\n</think>\n\n") and qwen.traces[0]["thinking_tokens"] == 0
    assert qwen.traces[0]["markers"] == "qwen3" and "closed thinking itself ({'enable_thinking': False})" in caplog.text
    ids, closed = qwen._prompt_ids("Q?")  # the template's closed block is not sent twice
    assert closed and qwen.tokenizer.decode(ids).endswith("<|im_start|>assistant\n")

    r1 = lm("deepseek_r1")
    ids, closed = r1._prompt_ids("Q?")
    assert not closed and r1.tokenizer.decode(ids).endswith("<｜Assistant｜>")  # <think> is opened by the loop
    (text,) = r1.generate_until([req])
    assert text.startswith("<think>\n") and r1.traces[0]["prompt_tokens"] == len(ids) + 2  # + "<think>", "\n"

    oss = lm("gpt_oss", chat_template_args="reasoning_effort=high")
    assert "\nReasoning: high\n" in oss.tokenizer.decode(oss._prompt_ids("Q?")[0])
    assert "\nReasoning: high\n" in oss.apply_chat_template([{"role": "user", "content": "Q?"}])
    from m1_harness.thinking.lm import _check

    parsed = {"reasoning_effort": "high", "enable_thinking": False}
    for given in (
        "reasoning_effort=high;enable_thinking=false",
        '{"reasoning_effort": "high", "enable_thinking": false}',
        dict(parsed),
    ):  # lm-eval passes a dict when --model_args is JSON
        assert _check("chat_template_args", given, "dict") == parsed
    with pytest.raises(
        ValueError, match="m1_budget: chat_template_args='reasoning_effort' is not key=value;key=value or a JSON object"
    ):
        M1BudgetLM(pretrained="x", chat_template_args="reasoning_effort")
    with pytest.raises(ValueError, match="markers='qwen'; presets: m1, think_tags, huatuo_o1, .*, or auto"):
        M1BudgetLM(pretrained="x", markers="qwen")


# -- one real lm_eval CLI run per preset -------------------------------------------------------------
CLI_RUNS = [(f, "auto") for f in FAMILIES] + [("qwen3", "think_tags")]


@pytest.mark.slow  # a real lm_eval CLI run per preset (80 s for the eight on a loaded 2-core machine)
@pytest.mark.parametrize("family,markers", CLI_RUNS, ids=[f"{m}-{f}" for f, m in CLI_RUNS])
def test_lm_eval_cli_runs_each_preset(models, lm_eval_task_index, family, markers, tmp_path, monkeypatch, capsys):
    from lm_eval.__main__ import cli_evaluate

    preset = family if markers == "auto" else markers
    out = tmp_path / "out"
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "lm_eval",
            "--model",
            "m1_budget",
            "--model_args",
            f"pretrained={models[family]},markers={markers},thinking_budget=6,forcing=1,answer_budget=3,"
            + ",".join(f"{k}={v}" for k, v in FAST.items()),
            "--tasks",
            "medqa",
            "--limit",
            "2",
            "--batch_size",
            "2",
            "--output_path",
            str(out),
            "--log_samples",
        ],
    )
    cli_evaluate()
    err = capsys.readouterr().err
    if markers == "auto":
        assert f"m1_budget: markers=auto chose {preset}: " in err

    (results,) = out.rglob("results_*.json")
    assert json.loads(results.read_text())["n-samples"]["medqa"]["effective"] == 2
    (samples,) = out.rglob("samples_medqa_*.jsonl")
    responses = [json.loads(line)["resps"][0][0] for line in samples.read_text().splitlines()]
    (traces,) = (out / "m1_traces").glob("*.jsonl")
    records = sorted((json.loads(line) for line in traces.read_text().splitlines()), key=lambda r: r["doc_id"])
    docs = sorted(json.loads(line)["doc_id"] for line in samples.read_text().splitlines())
    assert docs == [r["doc_id"] for r in records] == [0, 1]
    m: Markers = PRESETS[preset]
    for rec, text in zip(records, [responses[docs.index(r["doc_id"])] for r in records]):
        assert rec["markers"] == preset
        assert rec["thinking_tokens"] == rec["generated_tokens"] + rec["forced_tokens"] <= 6
        assert text.startswith(m.think_start) and text.count(m.think_start) >= 1
        # the opening after the thinking is the preset's, with its budget-cut text only when cut
        assert m.answer_prefix(rec["hit_budget"]) in text
        if not rec["hit_budget"]:
            assert m.answer_prefix(True) not in text
