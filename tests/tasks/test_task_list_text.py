"""--tasks text as users type it: a stray comma, a space after a comma, nothing at all (hostile2 findings)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from m1_harness.preflight import RunArgError, task_names


def test_stray_commas_and_spaces_are_dropped():
    """lm-eval split 'medqa, medbullets4,' into 'medqa', ' medbullets4', '' and said: no task or group named ."""
    assert task_names("medqa, medbullets4,") == ["medqa", "medbullets4"]
    assert task_names(["medqa,,", " m1"]) == ["medqa", "m1"]


@pytest.mark.parametrize("text", ["", " , ", ","])
def test_no_task_at_all_is_one_sentence(text):
    with pytest.raises(RunArgError) as err:
        task_names(text)
    assert str(err.value) == (
        f"--tasks {text!r}: no task named; give at least one task or group (e.g. --tasks medqa; "
        "`lm_eval ls tasks` lists them)"
    )


@pytest.mark.subprocess
def test_empty_tasks_through_lm_eval_is_one_line(python_env, tmp_path):
    """It was lm-eval's traceback ending in "ValueError: No tasks specified, or no tasks found"."""
    proc = subprocess.run(
        [sys.executable, "-m", "lm_eval", "--model", "m1_budget", "--model_args", "pretrained=org/not-here"]
        + ["--tasks", "", "--limit", "1"],
        env=python_env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert (proc.returncode, proc.stderr.strip().splitlines()[-1]) == (
        1,
        "lm_eval: error: --tasks '': no task named; give at least one task or group (e.g. --tasks medqa; "
        "`lm_eval ls tasks` lists them)",
    )
