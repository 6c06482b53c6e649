"""The one benchmark loader: real sets, both layouts, the hub path, and exact errors."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from repo_paths import FIXTURES

from m1_harness import data
from m1_harness.data import DataError, load_items

REAL_SIZES = {
    "medmcqa": 4183,
    "medqa": 1273,
    "pubmedqa": 1000,
    "mmlu_pro_med": 1535,
    "gpqa_med": 390,
    "medbullets_op4": 308,
    "medbullets_op5": 308,
    "medxpertqa": 1449,
}


@pytest.mark.parametrize("benchmark,size", sorted(REAL_SIZES.items()))
def test_real_sets_have_their_exact_sizes(eval_data_dir, benchmark, size):
    items = load_items(benchmark, eval_data_dir)
    assert len(items) == size
    assert all(item["options"][item["answer_idx"]] == item["answer"] for item in items)


def test_env_var_is_the_default_location(eval_data_dir, monkeypatch):
    monkeypatch.setenv("M1_HARNESS_DATA", str(eval_data_dir))
    assert len(load_items("gpqa_med")) == 390


def test_combined_file_gives_the_same_items_as_the_jsonl(eval_data_dir):
    combined = eval_data_dir / "raw" / "huatuogpt_o1_eval_data.json"
    from_combined = load_items("medqa", combined)
    from_jsonl = load_items("medqa", eval_data_dir)
    assert len(from_combined) == 1273
    assert [i["question"] for i in from_combined] == [i["question"] for i in from_jsonl]
    assert [i["answer_idx"] for i in from_combined] == [i["answer_idx"] for i in from_jsonl]
    assert from_combined[0]["id"] == "medqa-00000"


def test_combined_file_without_the_benchmark_names_what_it_looked_for(eval_data_dir):
    combined = eval_data_dir / "raw" / "huatuogpt_o1_eval_data.json"
    with pytest.raises(DataError) as err:
        load_items("lancet", combined)
    assert str(err.value) == (
        f"benchmark 'lancet' not found in {str(combined)!r}: expected lancet.jsonl in that directory "
        "or a source named like Lancet, lancet_test in a combined JSON file"
    )


def test_demo_benchmark_ships_in_the_package():
    items = load_items("m1_demo")
    assert len(items) == 30
    assert items[0]["id"] == "demo-000"


GOOD = {"question": "Q?", "options": {"A": "x", "B": "y"}, "answer_idx": "B", "answer": "y"}


def _write(tmp_path, *lines):
    path = tmp_path / "medqa.jsonl"
    path.write_text("".join(line + "\n" for line in lines))
    return path


@pytest.mark.parametrize(
    "bad,message",
    [
        ('{"question": "Q?", "options": {"A": "x"', "not valid JSON (Expecting ',' delimiter at column 40)"),
        (json.dumps({**GOOD, "question": "  "}), "'question' is missing or empty"),
        (
            json.dumps({**GOOD, "options": {"A": "x"}}),
            "'options' must be an object with at least two options, got {'A': 'x'}",
        ),
        (json.dumps({**GOOD, "answer_idx": "C"}), "'answer_idx' 'C' is not one of the options ['A', 'B']"),
        (json.dumps({**GOOD, "answer": "x"}), "'answer' 'x' differs from option B 'y'"),
        (json.dumps({**GOOD, "options": {"A": "x", "B": ""}}), "option 'B', the answer, is empty"),
        ("[1, 2]", "expected a JSON object, got list"),
    ],
)
def test_bad_items_name_file_line_and_problem(tmp_path, bad, message):
    path = _write(tmp_path, json.dumps(GOOD), json.dumps(GOOD), bad)
    with pytest.raises(DataError) as err:
        load_items("medqa", tmp_path)
    assert str(err.value) == f"{path}:3: {message}. To go on: {data.SKIP_HINT}"


def test_whitespace_is_stripped_as_m1_strips_it(tmp_path):
    _write(
        tmp_path,
        json.dumps({"question": " Q? \n", "options": {"A": " x ", "B": "y"}, "answer_idx": "A", "answer": "x "}),
    )
    (item,) = load_items("medqa", tmp_path)
    assert (item["question"], item["options"], item["answer"], item["id"]) == (
        "Q?",
        {"A": "x", "B": "y"},
        "x",
        "medqa-00000",
    )


def test_missing_benchmark_in_a_directory(tmp_path):
    with pytest.raises(DataError) as err:
        load_items("medqa", tmp_path)
    assert "benchmark 'medqa' not found in" in str(err.value)
    assert "expected medqa.jsonl in that directory" in str(err.value)


def test_nonexistent_location_names_the_setting(tmp_path, monkeypatch):
    with pytest.raises(DataError) as err:
        load_items("medqa", tmp_path / "nope")
    assert (
        str(err.value)
        == f"data={str(tmp_path / 'nope')!r} does not exist: point it at the folder of <benchmark>.jsonl files (or a combined {{source_name: [items]}} JSON file)"
    )
    monkeypatch.setenv("M1_HARNESS_DATA", str(tmp_path / "nope"))
    with pytest.raises(DataError) as err:
        load_items("medqa")
    assert (
        str(err.value)
        == f"M1_HARNESS_DATA={str(tmp_path / 'nope')!r} does not exist: point it at the folder of <benchmark>.jsonl files (or a combined {{source_name: [items]}} JSON file)"
    )


def test_one_jsonl_file_serves_only_the_benchmark_it_is_named_for(eval_data_dir, monkeypatch):
    """M1_HARNESS_DATA=medqa.jsonl once made every benchmark load MedQA's 1273 items, exit 0."""
    medqa = eval_data_dir / "medqa.jsonl"
    monkeypatch.setenv("M1_HARNESS_DATA", str(medqa))
    assert len(load_items("medqa")) == 1273
    with pytest.raises(DataError) as err:
        load_items("medmcqa")
    assert str(err.value) == (
        f"M1_HARNESS_DATA={str(medqa)!r} is one JSONL file, named for another benchmark than 'medmcqa': a "
        "single file serves only the benchmark it is named after (medmcqa.jsonl). Point M1_HARNESS_DATA at "
        f"the folder of <benchmark>.jsonl files (e.g. {str(eval_data_dir)!r}), or at a combined "
        "{source_name: [items]} JSON file."
    )
    with pytest.raises(
        DataError, match=r"^data=.*medqa.jsonl' is one JSONL file, named for another benchmark than 'pubmedqa'"
    ):
        load_items("pubmedqa", medqa)


def test_a_plugin_source_file_may_have_any_name(tmp_path, eval_data_dir):
    src = tmp_path / "cardio_items.jsonl"
    src.write_text((eval_data_dir / "medqa.jsonl").read_text().splitlines()[0] + "\n")
    assert len(load_items("example_cardio", source=src)) == 1
    (tmp_path / "combined.json").write_text("{}")
    with pytest.raises(DataError, match="benchmark 'example_cardio' not found in its registered source"):
        load_items("example_cardio", source=tmp_path / "combined.json")


@pytest.mark.subprocess
def test_lm_eval_with_one_file_for_a_group_is_an_error_not_three_copies(eval_data_dir, python_env, tmp_path):
    import subprocess
    import sys

    env = dict(python_env, M1_HARNESS_DATA=str(eval_data_dir / "medqa.jsonl"))
    proc = subprocess.run(
        [sys.executable, "-m", "lm_eval", "--model", "dummy", "--tasks", "m1_indist", "--limit", "2"],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )
    assert proc.returncode != 0
    assert "is one JSONL file, named for another benchmark than 'medmcqa'" in proc.stderr


def _hub_cache(tmp_path, fixtures_dir):
    """The Hugging Face cache layout snapshot_download uses, holding our fixture files."""
    repo = tmp_path / "hub" / "datasets--UCSC-VLAA--m1_eval_data"
    revision = "0" * 40
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    shutil.copy(fixtures_dir / "m1_eval_data" / "eval_data.json", snapshot / "eval_data.json")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    return tmp_path / "hub"


def test_hub_dataset_is_used_when_no_location_is_set(tmp_path, monkeypatch):
    monkeypatch.delenv("M1_HARNESS_DATA", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(_hub_cache(tmp_path, FIXTURES)))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    lancet = load_items("lancet")
    nejm = load_items("nejm")
    assert [i["answer_idx"] for i in lancet] == ["B", "C", "A"]
    assert [i["id"] for i in nejm] == ["nejm-00000", "nejm-00001"]


def test_unreachable_hub_names_the_variable_and_dataset(tmp_path, monkeypatch):
    monkeypatch.delenv("M1_HARNESS_DATA", raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    with pytest.raises(DataError) as err:
        load_items("nejm")
    message = str(err.value)
    assert message.startswith(
        "benchmark 'nejm': M1_HARNESS_DATA is not set and the Hugging Face dataset UCSC-VLAA/m1_eval_data could not be loaded"
    )
    assert message.endswith(
        "Set M1_HARNESS_DATA to a directory of <benchmark>.jsonl files or a combined eval JSON file."
    )


def test_every_benchmark_has_a_task_yaml():
    from m1_harness.paths import shipped_dir

    names = {p.stem for p in (shipped_dir("tasks") / "m1").glob("*.yaml")}
    assert {b.task for b in data.BENCHMARKS.values()} <= names


# A real biomedical benchmark (102 items) was refused whole for one empty option text. This fixture
# mimics it: options A-J plus a stray P (line 2, and line 8 where P is the answer), an empty option
# that is not the answer (line 3), 22 options (line 4), and two items that cannot be scored: an answer
# key that is not an option (line 5) and an answer whose text is another option's (line 7).
MESSY = FIXTURES / "messy" / "biobench.jsonl"
KEPT_WARNINGS = [
    f"{MESSY}:2: kept (its answer can be scored), though its option letters are A-J, P, not A-K",
    f"{MESSY}:3: kept (its answer can be scored), though option 'D' is empty",
    f"{MESSY}:8: kept (its answer can be scored), though its option letters are A-J, P, not A-K",
]
BAD_LINES = [
    f"{MESSY}:5: 'answer_idx' 'K' is not one of the options ['A', 'B', 'C', 'D']",
    f"{MESSY}:7: 'answer' 'Hyperkalemia' differs from option A 'Hypokalemia'",
]


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "m1_harness.data" and r.levelname == "WARNING"]


def test_a_messy_file_is_an_error_at_the_first_item_that_cannot_be_scored(caplog):
    with pytest.raises(DataError) as err:
        load_items("biobench", source=MESSY)
    assert str(err.value) == f"{BAD_LINES[0]}. To go on: {data.SKIP_HINT}"
    assert (
        data.SKIP_HINT
        == """fix the item, or leave out the items that cannot be scored with --metadata '{"bad_items": "skip"}'"""
    )
    assert _warnings(caplog) == KEPT_WARNINGS[:2]  # read up to line 5


def test_skip_leaves_out_only_the_items_that_cannot_be_scored(caplog):
    items = load_items("biobench", source=MESSY, bad_items="skip")
    assert [i["id"] for i in items] == [
        "biobench-00000",
        "biobench-00001",
        "biobench-00002",
        "biobench-00003",
        "biobench-00005",
        "biobench-00007",
    ]
    assert items.skipped == tuple(BAD_LINES)
    assert _warnings(caplog) == [
        KEPT_WARNINGS[0],
        KEPT_WARNINGS[1],
        f"{BAD_LINES[0]}; skipped (bad_items=skip)",
        f"{BAD_LINES[1]}; skipped (bad_items=skip)",
        KEPT_WARNINGS[2],
        "biobench: 2 item(s) left out because they cannot be scored (bad_items=skip); 6 evaluated",
    ]
    stray, empty, many = items[1], items[2], items[3]
    assert list(stray["options"]) == [*"ABCDEFGHIJ", "P"] and stray["answer_idx"] == "C"
    assert empty["options"] == {"A": "Liver", "B": "Pancreas", "C": "Spleen", "D": "", "E": "Kidney"}
    assert len(many["options"]) == 22 and many["options"]["T"] == many["answer"] == "Methionine"
    assert items[5]["options"]["P"] == items[5]["answer"] == "Parathyroid hormone"


def test_skipping_never_changes_the_other_items(tmp_path):
    """The kept items, ids and order are those of the same file with the bad items repaired."""
    lines = MESSY.read_text().splitlines()
    fixed = [json.loads(line) for line in lines]
    fixed[4]["answer_idx"] = "B"
    fixed[6]["answer_idx"] = "B"
    path = tmp_path / "biobench.jsonl"
    path.write_text("".join(json.dumps(item) + "\n" for item in fixed))
    repaired = load_items("biobench", source=path)
    skipped = load_items("biobench", source=MESSY, bad_items="skip")
    assert len(repaired) == 8 and not repaired.skipped
    assert skipped == [item for item in repaired if item["id"] not in ("biobench-00004", "biobench-00006")]


def test_skip_in_a_combined_file_names_source_and_index(tmp_path):
    path = tmp_path / "eval_data.json"
    path.write_text(json.dumps({"MedQA": [GOOD, {**GOOD, "answer_idx": "Z"}, GOOD]}))
    items = load_items("medqa", path, bad_items="skip")
    assert [i["id"] for i in items] == ["medqa-00000", "medqa-00002"]
    assert items.skipped == (f"{path}: MedQA[1]: 'answer_idx' 'Z' is not one of the options ['A', 'B']",)


def test_a_file_with_no_item_that_can_be_scored_is_an_error(tmp_path):
    path = _write(tmp_path, json.dumps({**GOOD, "answer_idx": "Z"}), "not json")
    with pytest.raises(DataError) as err:
        load_items("medqa", tmp_path, bad_items="skip")
    assert str(err.value) == f"{path}: no items (2 left out: they cannot be scored)"


def test_odd_option_texts_are_read_as_the_file_has_them(tmp_path, caplog):
    path = _write(
        tmp_path,
        json.dumps({**GOOD, "options": {"A": 7, "B": "y", "C": None}}),
        json.dumps({**GOOD, "answer_idx": ["B"]}),
    )
    with pytest.raises(
        DataError, match=re.escape(f"{path}:2: 'answer_idx' ['B'] is not one of the options ['A', 'B']")
    ):
        load_items("medqa", tmp_path)
    assert _warnings(caplog) == [
        f"{path}:1: kept (its answer can be scored), though option 'A' is not text (int), "
        "read as '7'; option 'C' is empty"
    ]


def test_bad_items_setting_is_checked():
    with pytest.raises(DataError) as err:
        load_items("m1_demo", bad_items="drop")
    assert str(err.value) == (
        "bad_items='drop': use 'error' (the default: an item that cannot be scored is an error) "
        "or 'skip' (leave such items out, each with a warning, and count them)"
    )


@pytest.mark.subprocess
def test_lm_eval_run_skips_bad_items_and_counts_them_in_the_results(python_env, tmp_path):
    """A real lm_eval run (model dummy: only the data path matters) over the messy file as medqa."""
    import subprocess
    import sys

    (tmp_path / "data").mkdir()
    shutil.copy(MESSY, tmp_path / "data" / "medqa.jsonl")
    metadata = json.dumps({"data": str(tmp_path / "data"), "bad_items": "skip"})
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lm_eval",
            "--model",
            "dummy",
            "--tasks",
            "medqa",
            "--metadata",
            metadata,
            "--output_path",
            str(tmp_path / "out"),
            "--log_samples",
        ],
        env=python_env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    where = str(tmp_path / "data" / "medqa.jsonl")
    assert (
        f"{where}:5: 'answer_idx' 'K' is not one of the options ['A', 'B', 'C', 'D']; skipped (bad_items=skip)"
        in proc.stderr
    )
    assert f"{where}:3: kept (its answer can be scored), though option 'D' is empty" in proc.stderr
    (results,) = (tmp_path / "out").rglob("results_*.json")
    out = json.loads(results.read_text())
    assert out["results"]["medqa"]["bad_items_skipped,none"] == 2
    assert out["n-samples"]["medqa"] == {"original": 6, "effective": 6}
    (samples,) = (tmp_path / "out").rglob("samples_medqa_*.jsonl")
    docs = sorted((json.loads(line) for line in samples.read_text().splitlines()), key=lambda s: s["doc_id"])
    assert [s["doc"]["id"] for s in docs] == [
        "medqa-00000",
        "medqa-00001",
        "medqa-00002",
        "medqa-00003",
        "medqa-00005",
        "medqa-00007",
    ]
