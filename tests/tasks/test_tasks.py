"""The m1 lm-eval tasks: names, prompt, generation defaults, exact scores, groups, discovery."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from scripted_lm import ScriptedLM

from m1_harness.data import BENCHMARKS
from m1_harness.taskfns import build_prompt

TASKS = [b.task for b in BENCHMARKS.values()]


def _evaluate(lm, tasks, limit, metadata=None):
    """simple_evaluate over our task folders only (indexing lm-eval's 10K tasks costs ~20 s)."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_defaults=False, metadata=metadata)
    return lm_eval.simple_evaluate(model=lm, tasks=tasks, limit=limit, task_manager=manager)


def test_task_names_are_the_documented_ones():
    assert TASKS == [
        "m1_medmcqa",
        "medqa",
        "m1_pubmedqa",
        "m1_mmlu_pro_med",
        "m1_gpqa_med",
        "lancet",
        "nejm",
        "medbullets4",
        "medbullets5",
        "medxpertqa",
    ]


def test_no_task_shadows_an_lm_eval_builtin():
    import lm_eval

    builtin_dir = Path(lm_eval.__file__).parent / "tasks"
    names = set()
    for path in builtin_dir.rglob("*.yaml"):
        names.update(re.findall(r"^(?:task|group|tag):\s*([\w\-]+)", path.read_text(errors="ignore"), re.M))
    assert "medmcqa" in names and "pubmedqa" in names  # the index really is lm-eval's
    ours = set(TASKS) | {"m1", "m1_indist", "m1_ood", "m1_demo"}
    assert ours.isdisjoint(names)


def test_all_tasks_and_groups_are_indexed():
    from lm_eval.tasks import TaskManager

    tm = TaskManager(include_defaults=False)  # our folders come from the patched __init__
    for name in TASKS + ["m1", "m1_indist", "m1_ood", "m1_demo"]:
        assert name in tm.all_tasks, name


def test_prompt_is_exactly_the_papers():
    options = {"A": "Aspirin", "B": "Heparin", "C": "Warfarin"}
    assert build_prompt("Which drug?", options) == (
        "Which drug?\nA. Aspirin\nB. Heparin\nC. Warfarin\nReturn your final response within \\boxed{}."
    )
    assert build_prompt("Which drug?", options, "cot").endswith(
        "\nC. Warfarin\nLet's think step by step. Return your final response within \\boxed{}."
    )
    with pytest.raises(ValueError, match=r"prompt='x' is not one of \['cot', 'm1'\]"):
        build_prompt("Q", options, "x")


def test_generation_defaults_suit_reasoning_models():
    from m1_harness.paths import shipped_dir

    text = (shipped_dir("tasks") / "m1" / "_m1_template_yaml").read_text()
    gen = yaml.safe_load(text.replace("!function ", ""))["generation_kwargs"]
    assert gen == {"until": [], "do_sample": False, "temperature": 0.0, "max_gen_toks": 4096}


def test_exact_scores_and_extraction_shares_on_real_sets():
    lm = ScriptedLM(all_correct={"medbullets5"})
    out = _evaluate(lm, ["medqa", "medbullets5", "m1_pubmedqa"], limit=8)
    res = out["results"]
    for task in ("medqa", "m1_pubmedqa"):
        assert res[task]["acc,none"] == 0.5
        assert res[task]["boxed_share,none"] == 0.25
        assert res[task]["regex_share,none"] == 0.5
        assert res[task]["none_share,none"] == 0.25
        assert res[task]["guess_share,none"] == 0.0
    assert res["medbullets5"]["acc,none"] == 1.0
    assert res["medbullets5"]["boxed_share,none"] == 1.0
    # the prompt the model saw is the paper's, built from the real first MedQA item
    first = json.loads((Path(__import__("os").environ["M1_HARNESS_DATA"]) / "medqa.jsonl").open().readline())
    assert build_prompt(first["question"], first["options"]) in lm.prompts


def test_group_score_is_the_plain_mean_of_its_tasks():
    lm = ScriptedLM(all_correct={"medqa"})
    out = _evaluate(lm, ["m1_indist"], limit=4)
    res = out["results"]
    assert res["medqa"]["acc,none"] == 1.0
    assert res["m1_medmcqa"]["acc,none"] == 0.5
    assert res["m1_pubmedqa"]["acc,none"] == 0.5
    assert res["m1_indist"]["acc,none"] == pytest.approx(2 / 3)


def test_cot_instruction_is_selected_through_metadata():
    lm = ScriptedLM()
    _evaluate(lm, ["m1_demo"], limit=2, metadata={"prompt": "cot"})
    assert all(p.endswith("Let's think step by step. Return your final response within \\boxed{}.") for p in lm.prompts)


def test_first_match_reading_is_an_option(monkeypatch):
    class TwoAnswers(ScriptedLM):
        def generate_until(self, requests, disable_tqdm=False):
            return [
                f"The answer is {r.doc['answer_idx']}. On reflection the answer is "
                f"{next(x for x in r.doc['letters'] if x != r.doc['answer_idx'])}"
                for r in requests
            ]

    assert _evaluate(TwoAnswers(), ["m1_demo"], limit=3)["results"]["m1_demo"]["acc,none"] == 0.0
    monkeypatch.setenv("M1_HARNESS_MATCH", "first")
    assert _evaluate(TwoAnswers(), ["m1_demo"], limit=3)["results"]["m1_demo"]["acc,none"] == 1.0


def test_bad_data_is_an_error_naming_the_file(tmp_path):
    (tmp_path / "medqa.jsonl").write_text(
        '{"question": "Q", "options": {"A": "x", "B": "y"}, "answer_idx": "Z", "answer": "x"}\n'
    )
    from m1_harness.data import DataError

    with pytest.raises(
        DataError,
        match=re.escape(f"{tmp_path / 'medqa.jsonl'}:1: 'answer_idx' 'Z' is not one of the options ['A', 'B']"),
    ):
        _evaluate(ScriptedLM(), ["medqa"], limit=1, metadata={"data": str(tmp_path)})


def _run(cmd, env, cwd):
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.mark.subprocess
def test_autoload_is_cheap_and_imports_nothing_heavy(python_env, tmp_path):
    code = "import sys; print(sorted(m for m in ('pluggy','lm_eval','torch','transformers','yaml') if m in sys.modules)); print('m1_harness._autoload' in sys.modules)"
    out = _run([sys.executable, "-c", code], python_env, tmp_path)
    assert out.stdout.split("\n")[:2] == ["[]", "True"], out.stderr
    # -X importtime: what the hook itself costs at start-up (microseconds, cumulative); the fastest of
    # three starts, since a shared 2-core machine under load slows any single one several times over
    runs = []
    for _ in range(3):
        out = _run([sys.executable, "-X", "importtime", "-c", "pass"], python_env, tmp_path)
        costs = {
            line.split("|")[2].strip(): int(line.split("|")[1])
            for line in out.stderr.splitlines()
            if line.count("|") == 2 and line.split("|")[2].strip().startswith("m1_harness")
        }
        assert set(costs) == {"m1_harness", "m1_harness._autoload"}
        runs.append(sum(costs.values()))
    assert min(runs) < 5000, runs


@pytest.mark.subprocess
def test_autoload_can_be_switched_off(python_env, tmp_path):
    code = "from lm_eval.tasks import TaskManager; from lm_eval.api.registry import model_registry; print('medqa' in TaskManager(include_defaults=False).all_tasks, 'm1_budget' in model_registry, 'hf' in model_registry)"
    on = _run([sys.executable, "-c", code], python_env, tmp_path)
    assert on.stdout.strip().splitlines()[-1] == "True True True", on.stderr[-2000:]
    python_env["M1_HARNESS_AUTOLOAD"] = "0"
    off = _run([sys.executable, "-c", code], python_env, tmp_path)
    assert off.stdout.strip().splitlines()[-1] == "False False False", off.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.subprocess
def test_explicit_route_runs_lm_eval_without_the_hook(python_env, tmp_path):
    python_env["M1_HARNESS_AUTOLOAD"] = "0"
    out = _run(
        [
            sys.executable,
            "-m",
            "m1_harness",
            "eval",
            "--model",
            "dummy",
            "--tasks",
            "medqa,medbullets5",
            "--limit",
            "2",
            "--output_path",
            str(tmp_path / "out"),
        ],
        python_env,
        tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    (results,) = (tmp_path / "out").rglob("results_*.json")
    data = json.loads(results.read_text())
    assert sorted(data["results"]) == ["medbullets5", "medqa"]
    assert data["n-samples"]["medqa"]["effective"] == 2


@pytest.mark.slow
@pytest.mark.subprocess
def test_lm_eval_lists_the_tasks_from_any_directory(python_env, tmp_path):
    out = _run([str(Path(sys.executable).parent / "lm_eval"), "ls", "tasks"], python_env, tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    for name in ("medqa", "medbullets5", "m1_medmcqa", "lancet", "nejm", "m1_demo"):
        assert re.search(rf"\|\s*{name}\s*\|", out.stdout), name
