"""A trace file with a hand-edited record version (hostile2 finding): the reader skips it, naming the line."""

from __future__ import annotations

import json
import logging

from m1_harness.records import VERSION, read_records


def test_a_record_whose_version_is_not_a_number_is_skipped_by_line(tmp_path, caplog):
    """int('2b') in upgrade() was a traceback out of report, explain and plot."""
    path = tmp_path / "traces.jsonl"
    rows = [{"thinking_tokens": 4, "version": "2b"}, {"thinking_tokens": 5}, {"thinking_tokens": 6, "version": VERSION}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with caplog.at_level(logging.WARNING, logger="m1_harness.records"):
        got = [(r["thinking_tokens"], r["version"]) for r in read_records(path)]
    assert got == [(5, 1), (6, VERSION)]
    assert caplog.messages == [f"skipping {path}:1: its version '2b' is not a whole number"]
