"""Analysis joins pair items by identity (the item's own id and a hash of question and options), never
by lm-eval's positional doc_id, and runs that collide on a table key are all shown, labelled by what
differs (issue 22, class 3). Built from the explain fixtures (tests/fixtures/explain)."""

import json
import shutil
from pathlib import Path

from repo_paths import FIXTURES

from m1_harness import cli
from m1_harness.analysis import explain, items, outcomes, report, results

RUNS = FIXTURES / "explain" / "runs"
SETTING = "org__m1-a"


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def shifted_copy(src: Path, dst: Path, task: str = "medqa") -> Path:
    """``src`` as if run over a data file without its first item of ``task``: every later item one
    doc_id down, in the samples file and in the trace records."""
    shutil.copytree(src, dst)
    (samples,) = (dst / SETTING).glob(f"samples_{task}_*.jsonl")
    write_jsonl(samples, [r | {"doc_id": r["doc_id"] - 1} for r in jsonl(samples) if r["doc_id"] > 0])
    recs = jsonl(dst / "traces.jsonl")
    write_jsonl(
        dst / "traces.jsonl", [r | {"doc_id": r["doc_id"] - 1} for r in recs if r["task"] != task or r["doc_id"] > 0]
    )
    return dst


def rows_by_item(rows, model, task="medqa"):
    return {r["item"]: r for r in rows if (r["model"], r["task"]) == (model, task)}


def test_explain_pairs_a_shifted_data_file_by_item_not_by_position(tmp_path):
    (model,) = {r.model for r in results.load_results([RUNS / "m1-a" / "budget16_forcing0"])}
    whole = explain.explain([RUNS / "m1-a" / "budget16_forcing0", RUNS / "m1-a" / "budget128_forcing0"], None)
    shifted = shifted_copy(RUNS / "m1-a" / "budget128_forcing0", tmp_path / "budget128_forcing0")
    moved = explain.explain([RUNS / "m1-a" / "budget16_forcing0", shifted], None)
    want = rows_by_item(whole["trajectories"], model)
    got = rows_by_item(moved["trajectories"], model)
    assert sorted(got) == sorted(want)  # 12 items, none merged with another
    for item in want:
        if item == "medqa-00000":  # not in the shifted file: budget 16 only
            assert [s["setting"] for s in got[item]["settings"]] == ["budget 16, forcing 0"]
            continue
        assert got[item]["settings"] == want[item]["settings"], item
    (flip,) = [f for f in moved["flips"] if f["task"] == "medqa" and f["axis"] == "budget"]
    (full,) = [f for f in whole["flips"] if f["task"] == "medqa" and f["axis"] == "budget"]
    first = want["medqa-00000"]["settings"]
    change = (first[0]["correct"], first[1]["correct"])
    assert flip["n"] == 11
    assert flip["wrong_to_right"] == full["wrong_to_right"] - (change == (False, True))
    assert flip["right_to_wrong"] == full["right_to_wrong"] - (change == (True, False))


def test_report_paired_pairs_a_shifted_data_file_by_item(tmp_path, capsys):
    shifted = shifted_copy(RUNS / "m1-a" / "budget128_forcing0", tmp_path / "budget128_forcing0")
    whole = report.paired_comparisons(
        results.load_results([RUNS / "m1-a" / "budget16_forcing0", RUNS / "m1-a" / "budget128_forcing0"])
    )
    moved = report.paired_comparisons(results.load_results([RUNS / "m1-a" / "budget16_forcing0", shifted]))
    pick = lambda ps: next(p for p in ps if p["task"] == "medqa" and p["vary"] == "budget")  # noqa: E731
    a, b = pick(whole), pick(moved)
    assert b["n"] == 11
    r16 = next(r for r in results.load_results([RUNS / "m1-a" / "budget16_forcing0"]) if r.task == "medqa")
    r128 = next(r for r in results.load_results([RUNS / "m1-a" / "budget128_forcing0"]) if r.task == "medqa")
    key0 = next(k for k in r16.items if k.startswith("medqa-00000#"))
    assert (b["a_only"], b["b_only"]) == (
        a["a_only"] - (r16.items[key0] > r128.items[key0]),
        a["b_only"] - (r128.items[key0] > r16.items[key0]),
    )


def test_trace_records_of_another_item_at_the_same_doc_id_are_not_taken(tmp_path):
    """A record that names its item (item_id / item_hash) is joined to that item only."""
    run = shutil.copytree(RUNS / "m1-a" / "budget64_forcing1", tmp_path / "run")
    recs = jsonl(run / "traces.jsonl")
    (samples,) = (run / SETTING).glob("samples_medqa_*.jsonl")
    docs = {r["doc_id"]: r["doc"] for r in jsonl(samples)}
    for r in recs:
        if r["task"] == "medqa":
            doc = docs[r["doc_id"]] if r["doc_id"] != 2 else docs[3]  # item 2's record claims item 3
            r |= {"item_id": doc["id"], "item_hash": items.item_hash(doc)}
    write_jsonl(run / "traces.jsonl", recs)
    (r,) = [r for r in outcomes.load_runs([run]) if r.task == "medqa"]
    assert [r.outcomes[i].thinking_tokens for i in range(4)] == [45, 64, None, 64]


def limited_copy(src: Path, dst: Path, date: str, limit: int | None = None, answer_budget: int | None = None) -> Path:
    """``src`` rerun with ``--limit`` (the first ``limit`` items) or another answer_budget, dated ``date``."""
    shutil.copytree(src, dst)
    (res,) = (dst / SETTING).glob("results_*.json")
    data = json.loads(res.read_text())
    if limit is not None:
        data["config"]["limit"] = limit
        for n in data["n-samples"].values():
            n["effective"] = min(limit, n["effective"])
    if answer_budget is not None:
        data["config"]["model_args"] = data["config"]["model_args"].replace(
            "answer_budget=64", f"answer_budget={answer_budget}"
        )
    old = res.name.removeprefix("results_").removesuffix(".json")
    for f in (dst / SETTING).iterdir():
        text = f.read_text()
        if f.name.startswith("samples_") and limit is not None:
            text = "".join(line + "\n" for line in text.splitlines()[:limit])
        (dst / SETTING / f.name.replace(old, date)).write_text(text)
        f.unlink()
    (dst / SETTING / f"results_{date}.json").write_text(json.dumps(data))
    return dst


def test_report_keeps_runs_that_differ_in_limit_or_answer_budget(tmp_path, capsys):
    src = RUNS / "m1-a" / "budget16_forcing0"
    short = limited_copy(src, tmp_path / "short", "2026-11-30T10-00-00.000000", limit=8)
    answer = limited_copy(src, tmp_path / "answer", "2026-11-30T11-00-00.000000", answer_budget=16)
    rerun = limited_copy(src, tmp_path / "rerun", "2026-11-30T12-00-00.000000")  # the same run again: newest wins
    loaded = results.load_results([src, short, answer, rerun])
    medqa = sorted((r.model, r.n, Path(r.source).parent.parent.name) for r in loaded if r.task == "medqa")
    assert medqa == [
        ("org/m1-a [answer_budget=16, limit=all]", 12, "answer"),
        ("org/m1-a [answer_budget=64, limit=8]", 8, "short"),
        ("org/m1-a [answer_budget=64, limit=all]", 12, "rerun"),
    ]
    assert cli.main(["report", str(src), str(short), str(answer), "--no_intervals"]) == 0
    table = capsys.readouterr().out
    for label in (
        "org/m1-a [answer_budget=16, limit=all] (budget=16, forcing=0)",
        "org/m1-a [answer_budget=64, limit=8] (budget=16, forcing=0)",
        "org/m1-a [answer_budget=64, limit=all] (budget=16, forcing=0)",
    ):
        assert f"| {label} |" in table, table


def test_runs_over_different_items_at_one_setting_are_labelled_by_their_data(tmp_path):
    src = RUNS / "m1-a" / "budget16_forcing0"
    shifted = shifted_copy(src, tmp_path / "s")
    (res,) = (shifted / SETTING).glob("results_*.json")
    res.rename(res.with_name("results_2026-11-30T10-00-00.000000.json"))
    for f in (shifted / SETTING).glob("samples_*.jsonl"):
        f.rename(f.with_name(f.name.replace("2026-11-29T10-00-00.000000", "2026-11-30T10-00-00.000000")))
    names = sorted({r.model for r in results.load_results([src, shifted]) if r.task == "medqa"})
    assert len(names) == 2 and all(n.startswith("org/m1-a [data=") for n in names), names


def test_item_identity_is_the_items_own_id_and_its_question_and_options():
    doc = {"id": "q1", "question": "Which?", "letters": ["A", "B"], "choices": ["x", "y"]}
    assert items.item_key(doc) == f"q1#{items.item_hash(doc)}"
    assert items.item_hash(doc) == items.item_hash(doc | {"answer_idx": "B", "prompt": "another template"})
    assert items.item_hash(doc) != items.item_hash(doc | {"choices": ["y", "x"]})
    assert items.item_hash(doc) != items.item_hash(doc | {"question": "Which one?"})
    assert items.keyed_by_item([doc, doc]) == [items.item_key(doc), items.item_key(doc) + "~2"]
