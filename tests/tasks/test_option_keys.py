"""Every option key shape the loader accepts is scored whole (issue 22, class 4), the others are refused
with a sentence, and M1_HARNESS_STRICT counts a similarity guess as wrong (issue 25, item 6)."""

from __future__ import annotations

import json

import pytest

from m1_harness import data, taskfns
from m1_harness.data import load_items
from m1_harness.scoring import Score, extract_choice, score

# 29 options: A..Z, then AA, AB, AC (a real shape: long option lists continue like spreadsheet columns)
KEYS29 = [chr(ord("A") + i) for i in range(26)] + ["AA", "AB", "AC"]
OPTS29 = {k: f"Compound {i}" for i, k in enumerate(KEYS29)}
OPTS12 = {str(i): f"Stage {i} disease" for i in range(1, 13)}


@pytest.mark.parametrize(
    "response, expected",
    [
        ("The answer is AA", ("AA", "answer_is")),
        ("The answer is AB.", ("AB", "answer_is")),
        ("The answer is A", ("A", "answer_is")),
        ("The answer is Z", ("Z", "answer_is")),  # the item's own keys past N, read whole
        ("The answer is Obviously B", ("B", "letter")),  # "O" is no whole key there
        ("\\boxed{AA}", ("AA", "boxed")),
        ("\\boxed{AC. Compound 28}", ("AC", "boxed")),
        ("\\boxed{(AB) Compound 27}", ("AB", "boxed")),
        ("I pick AA, not A.", ("A", "letter")),  # last match counts: A
        ("I pick A, then AA", ("AA", "letter")),
        ("The answer is AAspirin", ("A", "answer_is")),  # not the key AA: as "answer is Aspirin" reads A
    ],
)
def test_two_letter_keys_are_read_whole(response, expected):
    assert extract_choice(response, OPTS29) == expected


def test_answer_is_aa_scores_aa_not_a():
    assert score("The answer is AA", OPTS29, "AA").correct
    assert not score("The answer is AA", OPTS29, "A").correct


@pytest.mark.parametrize(
    "response, expected",
    [
        ("The answer is 12", ("12", "answer_is")),
        ("The answer is 1.", ("1", "answer_is")),
        ("The answer is 2.5 grams, so 3", ("3", "letter")),  # 2.5 is no key; the lone 3 is
        ("\\boxed{12}", ("12", "boxed")),
        ("\\boxed{4. Stage 4 disease}", ("4", "boxed")),
        ("Option 11 fits best", ("11", "letter")),
        ("It is stage 10", ("10", "letter")),
    ],
)
def test_number_keys_are_read_whole(response, expected):
    assert extract_choice(response, OPTS12) == expected


def _item(keys, answer_idx):
    return {
        "question": "Which one?",
        "options": {k: f"text {i}" for i, k in enumerate(keys)},
        "answer_idx": answer_idx,
        "answer": f"text {list(keys).index(answer_idx)}",
    }


@pytest.mark.parametrize(
    "key, rename",
    [
        ("a", " (e.g. 'A')"),
        ("(A)", " (e.g. 'A')"),
        ("A.", " (e.g. 'A')"),
        ("1.", " (e.g. '1')"),
        ("A1", ""),
        ("α", ""),
    ],
)
def test_keys_scoring_cannot_read_whole_are_refused(key, rename):
    keys = [key, "B", "C"]
    with pytest.raises(data.BadItem) as err:
        data.validate_item(_item(keys, "B"), "f.jsonl:3")
    assert str(err.value) == (
        f"f.jsonl:3: option key {key!r} cannot be scored exactly: keys must be capital letters "
        f"(A, B, ..., AA) or numbers (1, 2, ...); rename it{rename} and its answer_idx"
    )


def test_a_29_option_file_loads_without_warning_and_scores_aa(tmp_path, caplog, monkeypatch):
    monkeypatch.delenv(taskfns.STRICT_ENV, raising=False)
    monkeypatch.delenv(taskfns.MATCH_ENV, raising=False)
    path = tmp_path / "long.jsonl"
    path.write_text(json.dumps(_item(KEYS29, "AA")) + "\n" + json.dumps(_item(["1", "2", "3"], "2")) + "\n")
    items = load_items("long", source=path)
    assert [list(i["options"])[-1] for i in items] == ["AC", "3"]
    assert not [r for r in caplog.records if r.name == "m1_harness.data"]
    rows = taskfns.load_dataset("long", source=str(path))["test"]
    assert taskfns.process_results(rows[0], ["The answer is AA"])["acc"] == 1
    assert taskfns.process_results(rows[0], ["The answer is A"])["acc"] == 0
    assert taskfns.process_results(rows[1], ["<|im_start|>answer\nAnswer: 2"])["acc"] == 1


def test_skipped_letter_warning_names_the_usual_sequence_past_z(caplog):
    keys = KEYS29[:27] + ["AC"]  # AB missing
    data.validate_item(_item(keys, "AA"), "f.jsonl:1")
    assert [r.getMessage() for r in caplog.records] == [
        "f.jsonl:1: kept (its answer can be scored), though its option letters are A-Z, AA, AC, not A-Z, AA, AB"
    ]


# --- M1_HARNESS_STRICT ---------------------------------------------------------------------------

OPTS = {"A": "Aspirin", "B": "Heparin", "C": "Warfarin", "D": "Clopidogrel"}
DOC = {"letters": list(OPTS), "choices": list(OPTS.values()), "answer_idx": "C", "bad_items_skipped": 0}


def test_strict_counts_a_similarity_guess_as_wrong(monkeypatch):
    guess = "Warfrin"  # no rule finds an answer; the most similar option text is C
    assert extract_choice(guess, OPTS) == ("C", "similarity")
    monkeypatch.delenv(taskfns.STRICT_ENV, raising=False)
    shares = {"boxed_share": 0, "regex_share": 0, "guess_share": 1, "none_share": 0}
    assert taskfns.process_results(DOC, [guess]).items() >= ({"acc": 1} | shares).items()
    monkeypatch.setenv(taskfns.STRICT_ENV, "1")
    assert taskfns.process_results(DOC, [guess]).items() >= ({"acc": 0} | shares).items()
    assert taskfns.process_results(DOC, ["The answer is C"])["acc"] == 1  # found by a rule: still right
    assert score(guess, OPTS, "C", strict=True) == Score("C", "similarity", False)


@pytest.mark.parametrize(
    "env, value, message",
    [
        (
            "M1_HARNESS_STRICT",
            "maybe",
            "M1_HARNESS_STRICT='maybe': use 1 (a similarity guess counts as wrong) or 0 "
            "(it counts as m1's code counts it, the default)",
        ),
        (
            "M1_HARNESS_MATCH",
            "final",
            "M1_HARNESS_MATCH='final': use 'last' (m1's released code, the default) or 'first' (the paper's text)",
        ),
    ],
)
def test_a_bad_scoring_setting_is_one_sentence_when_the_task_loads(monkeypatch, env, value, message):
    monkeypatch.setenv(env, value)
    with pytest.raises(taskfns.ScoringSettingError) as err:
        taskfns.load_dataset("m1_demo")
    assert str(err.value) == message
