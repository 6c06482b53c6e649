"""A broken third-party plugin costs only its own tasks; the README's plugin example works as written
(issue 25 item 1)."""

from __future__ import annotations

import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from repo_paths import REPO

README = REPO / "README.md"
SECTION = "## Writing a plugin"  # the README's plugin example lives under this heading
TINY = "thinking_budget=4,answer_budget=4,engine=hf,cache=off"


def _lm_eval(python, env, cwd, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(python), "-m", "lm_eval", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=900
    )


@pytest.fixture
def plugin_without_data(tmp_path) -> Path:
    """A plugin as pip installs it when its pyproject forgets package-data: code, no JSONL."""
    site = tmp_path / "site"
    (site / "nodata_plugin").mkdir(parents=True)
    (site / "nodata_plugin" / "__init__.py").write_text(
        "from pathlib import Path\nfrom m1_harness import hookimpl\n\n@hookimpl\ndef m1_register_benchmarks(register):\n"
        "    register('nodata_bench', Path(__file__).parent / 'data' / 'nodata_bench.jsonl')\n"
    )
    info = site / "nodata_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: nodata-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[m1_harness]\nnodata = nodata_plugin\n")
    return site


@pytest.mark.subprocess
def test_a_plugin_missing_its_data_leaves_other_tasks_working(plugin_without_data, python_env, tmp_path, tiny_model):
    env = {**python_env, "PYTHONPATH": f"{REPO}:{plugin_without_data}"}
    missing = plugin_without_data / "nodata_plugin" / "data" / "nodata_bench.jsonl"
    warning = (
        f"m1-harness: plugin 'nodata' registered benchmark 'nodata_bench' with data {missing}, which does not "
        "exist: its task fails if asked for; reinstall the plugin with its data files (package-data)"
    )
    run = _lm_eval(
        sys.executable,
        env,
        tmp_path,
        "--model",
        "m1_budget",
        "--model_args",
        f"pretrained={tiny_model},{TINY}",
        "--tasks",
        "medqa",
        "--limit",
        "1",
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "medqa" in run.stdout and run.stderr.count(warning) == 1
    listing = _lm_eval(sys.executable, env, tmp_path, "ls", "tasks")
    assert listing.returncode == 0 and "nodata_bench" in listing.stdout and "medqa" in listing.stdout
    asked = _lm_eval(
        sys.executable,
        env,
        tmp_path,
        "--model",
        "m1_budget",
        "--model_args",
        "pretrained=org/not-here",
        "--tasks",
        "nodata_bench",
        "--limit",
        "1",
    )
    assert asked.returncode == 1 and "Traceback" not in asked.stderr
    assert asked.stderr.strip().splitlines()[-1] == (
        f"lm_eval: error: benchmark 'nodata_bench': its data file {str(missing)!r}, registered by a plugin, does not "
        "exist: reinstall the plugin with its data files (package-data), or pass data=PATH"
    )


def readme_plugin_files(text: str) -> tuple[dict[str, str], list[str]]:
    """The files (a code block whose first line is ``# path``) and shell blocks of the README's plugin example."""
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    files, shells = {}, []
    for lang, body in re.findall(r"```(\w+)\n(.*?)```", section, flags=re.S):
        first = body.splitlines()[0]
        if lang in ("bash", "sh"):
            shells.append(body)
        elif first.startswith("# ") and first.endswith((".toml", ".py", ".jsonl", ".cfg")):
            files[first[2:].strip()] = body
    return files, shells


@pytest.mark.subprocess
def test_the_readme_plugin_example_installs_and_runs_as_written(tmp_path, python_env, tiny_model):
    files, shells = readme_plugin_files(README.read_text(encoding="utf-8"))
    assert "pyproject.toml" in files, f"no '# pyproject.toml' block under {SECTION!r} in the README"
    pkg = tmp_path / "plugin"
    for rel, body in files.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(body)
    for body in shells:
        done = subprocess.run(["bash", "-e", "-c", body], cwd=pkg, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
    venv = tmp_path / "venv"
    # a scratch venv on top of this one: venv's --system-site-packages would see the base interpreter's
    # packages, not this venv's; a .pth adds this venv's site-packages (and runs its .pth files)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(purelib, "on_top_of_the_test_venv.pth").write_text(
        f"import site; site.addsitedir({sysconfig.get_paths()['purelib']!r})\n"
    )
    pip = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "."],
        cwd=pkg,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert pip.returncode == 0, pip.stderr[-3000:]
    env = {**python_env, "PYTHONPATH": str(REPO)}  # this checkout's m1_harness, the scratch venv's plugin
    env.pop("M1_HARNESS_LOAD_PLUGINS", None)
    run = _lm_eval(
        python,
        env,
        tmp_path,
        "--model",
        "m1_budget",
        "--model_args",
        f"pretrained={tiny_model},{TINY}",
        "--tasks",
        "example",
        "--limit",
        "1",
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "example_cardio" in run.stdout and "does not exist" not in run.stderr
