"""Mistakes found before the model loads (issue 22 class 9, issue 25 item 2): each is one sentence."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from m1_harness.data import BadItem, load_items
from m1_harness.errors import INTERRUPTED_EVAL
from m1_harness.preflight import RunArgError, check_limit
from m1_harness.thinking.lm import M1BudgetLM, ModelArgError

ITEM = {"question": "Which?", "options": {"A": "yes", "B": "no"}, "answer_idx": "A", "answer": "yes"}


def test_a_utf8_bom_file_is_read(tmp_path):
    """Windows editors start a file with a byte-order mark; it was refused at line 1 as invalid JSON."""
    path = tmp_path / "medqa.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + (json.dumps(ITEM) + "\n").encode() * 2)
    items = load_items("medqa", tmp_path)
    assert [it["question"] for it in items] == ["Which?", "Which?"]


@pytest.mark.subprocess
def test_a_lone_surrogate_names_the_line_and_field(tmp_path):
    """'\\ud83d' without its pair passed validation, then lm-eval's pyarrow failed to encode it."""
    path = tmp_path / "medqa.jsonl"
    bad = json.dumps({**ITEM, "options": {"A": "yes", "B": "no \ud83d"}})
    assert "\\ud83d" in bad
    path.write_text(json.dumps(ITEM) + "\n" + bad + "\n")
    with pytest.raises(BadItem) as err:
        load_items("medqa", tmp_path)
    assert str(err.value).startswith(
        f"{path}:2: option 'B' holds a lone surrogate \\ud83d at character 3 (half of an escaped UTF-16 pair): "
        "write the character itself, or both halves of its \\u escape."
    )


# -- through plain lm_eval: each mistake is one sentence, found before the model loads ----------------
# pretrained=org/not-here is a Hub id that is not cached: had the model been built first, its own error
# (not the one asserted) would be the last line, so each assertion also shows the check came first.


def lm_eval_last_line(python_env, tmp_path, *args, **env) -> tuple[int, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "lm_eval", "--model", "m1_budget", "--model_args", "pretrained=org/not-here", *args],
        env={**python_env, **env},
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return proc.returncode, proc.stderr.strip().splitlines()[-1]


@pytest.mark.subprocess
def test_a_wrong_task_name_gets_the_names_meant(python_env, tmp_path):
    assert lm_eval_last_line(python_env, tmp_path, "--tasks", "medqaa,medbullets", "--limit", "1") == (
        1,
        (
            "lm_eval: error: --tasks: no task or group named medqaa, medbullets; did you mean medqa, medbullets4, "
            "medbullets5? (`lm_eval ls tasks` lists them; add task folders with --include_path)"
        ),
    )


@pytest.mark.subprocess
def test_limit_zero_is_refused_before_the_model_loads(python_env, tmp_path):
    assert lm_eval_last_line(python_env, tmp_path, "--tasks", "medqa", "--limit", "0") == (
        1,
        (
            "lm_eval: error: --limit 0: give a whole number of items per task (e.g. --limit 10) or a share of each task "
            "between 0 and 1 (e.g. --limit 0.1), or leave it out for every item"
        ),
    )


@pytest.mark.parametrize("limit", [-3, 2.5, "x"])
def test_check_limit_refuses_what_lm_eval_cannot_count(limit):
    with pytest.raises(RunArgError, match=f"^--limit {limit}: give a whole number of items per task"):
        check_limit(limit)
    for fine in (None, 1, 10, 0.5):
        check_limit(fine)


@pytest.mark.subprocess
def test_a_data_setting_pointing_nowhere_is_reported_before_the_model_loads(python_env, tmp_path):
    assert lm_eval_last_line(
        python_env, tmp_path, "--tasks", "medqa", "--limit", "1", M1_HARNESS_DATA=str(tmp_path / "nowhere")
    ) == (
        1,
        (
            f"lm_eval: error: M1_HARNESS_DATA={str(tmp_path / 'nowhere')!r} does not exist: point it at the folder of "
            "<benchmark>.jsonl files (or a combined {source_name: [items]} JSON file)"
        ),
    )


@pytest.mark.subprocess
def test_a_bad_item_is_reported_before_the_model_loads(python_env, tmp_path):
    (tmp_path / "medqa.jsonl").write_text(json.dumps({**ITEM, "answer_idx": "C"}) + "\n")
    rc, last = lm_eval_last_line(
        python_env, tmp_path, "--tasks", "medqa", "--limit", "1", M1_HARNESS_DATA=str(tmp_path)
    )
    assert (rc, last.split(". To go on")[0]) == (
        1,
        (f"lm_eval: error: {tmp_path / 'medqa.jsonl'}:1: 'answer_idx' 'C' is not one of the options ['A', 'B']"),
    )


def test_a_hub_id_while_offline_is_one_sentence(monkeypatch):
    """It was a 107-line chained traceback after 5 retries."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelArgError) as err:
        M1BudgetLM(pretrained="org/not-here", engine="hf", cache="off")
    assert str(err.value) == (
        "m1_budget: pretrained='org/not-here' is a Hugging Face id that is not in the local cache, and HF_HUB_OFFLINE "
        "is set, so it cannot be downloaded: download it once online (`hf download org/not-here`), or pass the folder "
        "that holds its config.json"
    )


def test_a_negative_budget_says_what_is_valid():
    with pytest.raises(ModelArgError) as err:
        M1BudgetLM(pretrained="org/not-here", thinking_budget=-1)
    assert str(err.value) == "m1_budget: thinking_budget=-1 is not valid: give a whole number >= 0, or auto"


@pytest.mark.subprocess
def test_ctrl_c_in_lm_eval_is_one_line_saying_what_was_kept(python_env, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", "import lm_eval.evaluator; raise KeyboardInterrupt"],
        env=python_env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip() == f"lm_eval: {INTERRUPTED_EVAL}"
