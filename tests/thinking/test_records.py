"""The trace record (records.py): one builder, one writer safe for runs that share a file and for a
full disk, one reader that upgrades old records; each record says which item it was."""

import json
import os
import subprocess
import sys
import time

import pytest
import torch
from repo_paths import FIXTURES, REPO
from scripted_m1 import requests, scripted_lm

from m1_harness import data as m1_data
from m1_harness import taskfns
from m1_harness.records import VERSION, item_hash, item_identity, read_records

HELPERS = REPO / "tests" / "helpers"
SCRIPT = HELPERS / "scripted_m1.py"
OLD_RUN = FIXTURES / "explain" / "runs"


@pytest.fixture(scope="module")
def tiny(tiny_model):
    torch.set_num_threads(1)
    return str(tiny_model)


def test_every_sampled_record_gets_its_own_wall_time_on_the_streaming_driver(tiny, tmp_path):
    """samples=2: ``zip(idx, traces)`` stopped after len(idx) traces and wrote them at self.traces[i]
    (indexed i*K + j), so records 2..5 kept wall_time 0.0."""
    lm = scripted_lm(tiny, tmp_path / "t.jsonl", samples=2, seed=7)
    lm.generate_until(requests(3, do_sample=True, temperature=0.7), disable_tqdm=True)
    recs = list(read_records(tmp_path / "t.jsonl"))
    assert [(r["doc_id"], r["sample"]) for r in recs] == [(i, j) for i in range(3) for j in range(2)]
    walls = [r["wall_time"] for r in recs]
    assert all(w > 0 for w in walls) and len(set(walls)) == 1, walls  # one streaming run: one amortised time
    assert [r["wall_time"] for r in lm.traces] == walls


def test_a_record_carries_its_item_id_and_the_hash_of_question_and_options(tiny, tmp_path, eval_data_dir):
    items = m1_data.load_items("medqa", str(eval_data_dir))[:3]
    docs = list(taskfns.load_dataset("medqa", str(eval_data_dir))["test"])[:3]  # what lm-eval hands m1_budget
    lm = scripted_lm(tiny, tmp_path / "t.jsonl")
    lm.generate_until(requests(3, docs), disable_tqdm=True)
    recs = list(read_records(tmp_path / "t.jsonl"))
    assert [(r["item_id"], r["item_hash"]) for r in recs] == [
        (str(it["id"]), item_hash(it["question"], it["options"])) for it in items
    ]
    assert len({r["item_hash"] for r in recs}) == 3 and all(len(r["item_hash"]) == 16 for r in recs)
    assert all(r["version"] == VERSION for r in recs)
    # the same item read from the data file and as lm-eval's doc has one identity; a changed option, another
    assert item_identity(items[0]) == item_identity(docs[0])
    changed = dict(items[0], options={**items[0]["options"], "A": items[0]["options"]["A"] + "."})
    assert item_identity(changed)[1] != recs[0]["item_hash"]
    assert item_identity({"question": "q"}) == (None, None)  # another task's doc: unknown, not a wrong hash


def test_old_records_read_in_the_current_shape(tmp_path):
    old = next(OLD_RUN.glob("*/*/traces.jsonl"))  # written before records.py: no version, no item identity
    raw = [json.loads(line) for line in old.read_text().splitlines() if line.strip()]
    assert "version" not in raw[0] and "item_hash" not in raw[0]
    recs = list(read_records(old))
    assert len(recs) == len(raw)
    assert all(
        r["version"] == 1
        and r["item_id"] is None
        and r["item_hash"] is None
        and r["run_id"] is None
        and r["sample"] == 0
        for r in recs
    )
    assert [{k: r[k] for k in raw[0]} for r in recs] == raw  # what they had is kept as it was


def _start(tiny, trace, n, *extra):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(HELPERS)]))
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), tiny, str(trace), str(n), *map(str, extra)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.subprocess
def test_two_runs_started_together_on_one_trace_file_keep_all_their_records(tiny, tmp_path):
    """Two processes appending to one trace_path: the final rewrite put back only what was there at
    open plus its own records (24 of 48 were left), and the other run kept appending to the replaced file."""
    trace, go = tmp_path / "shared.jsonl", tmp_path / "go"
    runs = [_start(tiny, trace, 24, "--delay", 0.01, "--ready", tmp_path / f"ready{k}", "--go", go) for k in range(2)]
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"ready{k}").exists() for k in range(2)):
        assert time.monotonic() < deadline and all(p.poll() is None for p in runs), [p.communicate() for p in runs]
        time.sleep(0.05)
    go.touch()
    outs = [p.communicate(timeout=120) for p in runs]
    assert [p.returncode for p in runs] == [0, 0], outs
    recs = list(read_records(trace))
    assert len(recs) == 48
    by_run: dict[str, list[int]] = {}
    for r in recs:
        by_run.setdefault(r["run_id"], []).append(r["doc_id"])
    assert sorted(by_run.values()) == [list(range(24))] * 2  # each run's records once, in request order
    assert all(r["wall_time"] > 0 for r in recs)  # the final rewrite, not the appends, is what stayed


@pytest.mark.subprocess
def test_a_full_trace_disk_stops_the_run_with_one_sentence_and_keeps_the_finished_records(tiny, tmp_path):
    whole = tmp_path / "whole.jsonl"
    p = _start(tiny, whole, 8)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    lines = whole.read_bytes().splitlines(keepends=True)
    # room for 3 records and half the 4th (each append is whole or undone; a run id may differ by a digit)
    limit = sum(map(len, lines[:3])) + len(lines[3]) // 2
    trace = tmp_path / "full" / "t.jsonl"
    p = _start(tiny, trace, 8, "--fsize", limit)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 2 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == (
        f"error: trace_path={str(trace)!r}: writing a trace record failed (File too large); the 3 records finished "
        "before it are kept there: free space (or raise the file-size limit) or choose another trace_path, then "
        "run again (finished generate calls come back from the trace cache)"
    )
    kept = [json.loads(line) for line in trace.read_text().splitlines()]  # every line whole
    ran = [json.loads(line) for line in lines]
    assert [(r["doc_id"], r["text"]) for r in kept] == [(r["doc_id"], r["text"]) for r in ran[:3]]
