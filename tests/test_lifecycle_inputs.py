"""Mistakes found before the model loads (issue 22 class 9, issue 25 item 2): each is one sentence."""

from __future__ import annotations

import json

import pytest

from m1_harness.data import BadItem, load_items

ITEM = {"question": "Which?", "options": {"A": "yes", "B": "no"}, "answer_idx": "A", "answer": "yes"}


def test_a_utf8_bom_file_is_read(tmp_path):
    """Windows editors start a file with a byte-order mark; it was refused at line 1 as invalid JSON."""
    path = tmp_path / "medqa.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + (json.dumps(ITEM) + "\n").encode() * 2)
    items = load_items("medqa", tmp_path)
    assert [it["question"] for it in items] == ["Which?", "Which?"]


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
        "write the character itself, or both halves of its \\u escape.")
