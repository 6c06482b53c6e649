"""A trace file whose last line a killed writer left half-written (hostile2 finding)."""

from __future__ import annotations

import json

from m1_harness.records import TraceFile, read_records


def test_an_append_after_a_torn_line_starts_its_own_line(tmp_path):
    """The next run's first record was glued to the torn line and skipped as malformed by every reader."""
    path = tmp_path / "traces.jsonl"
    path.write_text(json.dumps({"thinking_tokens": 3, "run_id": "a"}) + "\n" + '{"thinking_tokens": 5, "run_')
    writer = TraceFile(path, "b")
    writer.append({"thinking_tokens": 7, "run_id": "b", "version": 2})
    writer.append({"thinking_tokens": 9, "run_id": "b", "version": 2})
    assert [r["thinking_tokens"] for r in read_records(path)] == [3, 7, 9]
    assert path.read_text().splitlines()[1] == '{"thinking_tokens": 5, "run_'  # the torn line stays as it was
