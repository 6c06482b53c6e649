"""The plugin system: every hook, entry-point loading, the allow-list, and its errors."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import pytest
from repo_paths import REPO
from scripted_lm import ScriptedLM

from m1_harness import hookimpl, hookspecs


def test_every_hook_has_a_test_of_its_own(isolated_plugins):
    """datasette's guard: every hook the plugin manager declares needs a test_hook_<name> here, so a hook
    added to hookspecs without a test fails the suite (the list is read from the manager, not written here)."""
    pm = isolated_plugins.get_plugin_manager()
    hooks = sorted(name for name, caller in vars(pm.hook).items() if caller.spec is not None)
    assert hooks and all(hasattr(hookspecs, h) for h in hooks), f"the plugin manager's hooks: {hooks}"
    missing = [h for h in hooks if not callable(globals().get(f"test_hook_{h}"))]
    assert not missing, f"hooks without a test_hook_<name> in {__file__}: {missing}"


def _plugin(name, **hooks):
    module = types.ModuleType(name)
    for hook_name, fn in hooks.items():
        setattr(module, hook_name, hookimpl(fn))
    return module


def _install_extra(plugins_mod, module):
    pm = plugins_mod.get_plugin_manager()
    pm.register(module, name=module.__name__)
    return pm


def test_hook_m1_register_tasks(isolated_plugins, tmp_path):
    folder = tmp_path / "my_tasks"
    folder.mkdir()
    (folder / "mini_medqa.yaml").write_text(
        "task: mini_medqa\ninclude: "
        + json.dumps(str(REPO / "tasks/m1/_m1_template_yaml"))
        + "\ndataset_kwargs:\n  benchmark: medqa\n"
    )
    _install_extra(isolated_plugins, _plugin("tasks_plugin", m1_register_tasks=lambda register: register(folder)))
    assert isolated_plugins.task_dirs()[-1] == folder
    import lm_eval
    from lm_eval.tasks import TaskManager

    out = lm_eval.simple_evaluate(
        model=ScriptedLM(), tasks=["mini_medqa"], limit=4, task_manager=TaskManager(include_defaults=False)
    )
    assert out["results"]["mini_medqa"]["acc,none"] == 0.5


def test_hook_m1_register_tasks_rejects_a_missing_folder(isolated_plugins, tmp_path):
    _install_extra(
        isolated_plugins, _plugin("bad_tasks", m1_register_tasks=lambda register: register(tmp_path / "nope"))
    )
    with pytest.raises(
        isolated_plugins.PluginError,
        match=r"plugin 'bad_tasks' registered task folder '.*nope', which is not a directory",
    ):
        isolated_plugins.task_dirs()


def test_hook_m1_register_benchmarks(isolated_plugins, tmp_path):
    data = tmp_path / "tiny_bench.jsonl"
    data.write_text(
        "".join(
            json.dumps(
                {
                    "question": f"Q{i}?",
                    "options": {"A": "yes", "B": "no", "C": "maybe"},
                    "answer_idx": "ABC"[i % 3],
                    "answer": ["yes", "no", "maybe"][i % 3],
                }
            )
            + "\n"
            for i in range(8)
        )
    )
    _install_extra(
        isolated_plugins,
        _plugin(
            "bench_plugin", m1_register_benchmarks=lambda register: register("tiny_bench", data, group="tiny_group")
        ),
    )
    import lm_eval
    from lm_eval.tasks import TaskManager

    out = lm_eval.simple_evaluate(
        model=ScriptedLM(), tasks=["tiny_group"], limit=8, task_manager=TaskManager(include_defaults=False)
    )
    assert out["results"]["tiny_bench"]["acc,none"] == 0.5
    assert out["results"]["tiny_group"]["acc,none"] == 0.5
    assert out["results"]["tiny_bench"]["none_share,none"] == 0.25


def test_hook_m1_register_models(isolated_plugins):
    _install_extra(
        isolated_plugins,
        _plugin("model_plugin", m1_register_models=lambda register: register("scripted", "scripted_lm:ScriptedLM")),
    )
    assert isolated_plugins.models() == {
        "m1_budget": "m1_harness.thinking.lm:M1BudgetLM",
        "scripted": "scripted_lm:ScriptedLM",
    }
    from lm_eval.api.registry import get_model, model_registry

    from m1_harness import _autoload

    _autoload.register_model()
    try:
        assert get_model("scripted") is ScriptedLM
        assert "hf" in model_registry and "vllm" in model_registry  # lm-eval's own models survive
    finally:
        model_registry._objs.pop("scripted", None)


def test_hook_m1_register_models_needs_an_import_target(isolated_plugins):
    _install_extra(
        isolated_plugins, _plugin("model_plugin", m1_register_models=lambda register: register("x", ScriptedLM))
    )
    with pytest.raises(
        isolated_plugins.PluginError, match=r"model 'x' must be registered as 'package.module:ClassName'"
    ):
        isolated_plugins.models()


def test_hook_m1_register_stages(isolated_plugins):
    class Upper:
        """A stand-in stage object; the curation runner's own tests exercise real stages."""

    _install_extra(
        isolated_plugins, _plugin("stage_plugin", m1_register_stages=lambda register: register("upper", Upper))
    )
    stages = isolated_plugins.stages()
    assert stages["upper"] is Upper
    # the m1 recipe's stages come through the same hook, from the built-in plugin
    assert {
        "collect",
        "dedup",
        "decontaminate",
        "difficulty",
        "distill",
        "verify",
        "domain",
        "sample",
        "format",
    } <= set(stages)


def test_hook_m1_register_trainers(isolated_plugins):
    def trainer(config):
        return config

    _install_extra(
        isolated_plugins, _plugin("trainer_plugin", m1_register_trainers=lambda register: register("echo", trainer))
    )
    trainers = isolated_plugins.trainers()
    assert trainers["echo"] is trainer
    from m1_harness.training.plugin import sft

    assert trainers["sft"] is sft


def test_a_name_registered_twice_is_an_error(isolated_plugins):
    _install_extra(isolated_plugins, _plugin("p1", m1_register_trainers=lambda register: register("dup", 1)))
    _install_extra(isolated_plugins, _plugin("p2", m1_register_trainers=lambda register: register("dup", 2)))
    with pytest.raises(isolated_plugins.PluginError, match=r"trainer 'dup' is registered twice: by 'p\d' and by 'p\d'"):
        isolated_plugins.trainers()


# --- entry points: the example package installed for real --------------------------------


@pytest.fixture(scope="session")
def example_site(tmp_path_factory) -> Path:
    """plugins/example installed with pip into a private target folder (no network needed)."""
    site = tmp_path_factory.mktemp("example_site")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(site),
            str(REPO / "plugins" / "example"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert (site / "m1_harness_example" / "data" / "example_cardio.jsonl").is_file()
    return site


def _fake_dist(site: Path, dist: str, module: str, source: str) -> None:
    """An installed distribution as pip lays it out: a module and a dist-info with entry points."""
    (site / f"{module}.py").write_text(source)
    info = site / f"{dist.replace('-', '_')}-0.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.3\n")
    (info / "entry_points.txt").write_text(f"[m1_harness]\n{module} = {module}\n")


@pytest.mark.subprocess
def test_entry_point_plugin_is_loaded_and_listed(isolated_plugins, example_site, monkeypatch):
    monkeypatch.syspath_prepend(str(example_site))
    rows = {r["name"]: r for r in isolated_plugins.describe_plugins()}
    assert rows["example"] == {
        "name": "example",
        "distribution": "m1-harness-example-plugin",
        "version": "0.1.0",
        "hooks": ["m1_register_benchmarks", "m1_register_models"],
    }
    assert rows["m1_harness.default_plugins"]["hooks"] == ["m1_register_models", "m1_register_tasks"]
    assert isolated_plugins.models()["constant_answer"] == "m1_harness_example.models:ConstantAnswerLM"


@pytest.mark.parametrize("allow,loaded", [("", False), ("example", True), ("other,example", True), ("other", False)])
@pytest.mark.subprocess
def test_allow_list_limits_entry_points(isolated_plugins, example_site, monkeypatch, allow, loaded):
    monkeypatch.syspath_prepend(str(example_site))
    monkeypatch.setenv("M1_HARNESS_LOAD_PLUGINS", allow)
    names = {r["name"] for r in isolated_plugins.describe_plugins()}
    assert ("example" in names) is loaded
    assert "m1_harness.default_plugins" in names  # built-ins always load


def test_broken_plugin_names_itself_and_its_distribution(isolated_plugins, tmp_path, monkeypatch):
    _fake_dist(tmp_path, "broken-plugin", "broken_plugin_mod", "import m1_harness_no_such_module\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(isolated_plugins.PluginError) as err:
        isolated_plugins.get_plugin_manager()
    assert str(err.value) == (
        "could not load plugin 'broken_plugin_mod' from distribution broken-plugin 0.3 (entry point "
        "'broken_plugin_mod'): ModuleNotFoundError: No module named 'm1_harness_no_such_module'"
    )


def test_misspelled_hook_is_an_error_not_silence(isolated_plugins, tmp_path, monkeypatch):
    _fake_dist(
        tmp_path,
        "typo-plugin",
        "typo_plugin_mod",
        "from m1_harness import hookimpl\n\n@hookimpl\ndef m1_register_task(register):\n    pass\n",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(isolated_plugins.PluginError) as err:
        isolated_plugins.get_plugin_manager()
    message = str(err.value)
    assert message.startswith(
        "m1-harness plugin 'typo_plugin_mod' (typo-plugin 0.3) implements a hook that does not exist:"
    )
    assert "m1_register_task" in message
    assert message.endswith(
        "Known hooks: m1_register_benchmarks, m1_register_models, m1_register_stages, m1_register_tasks, m1_register_trainers"
    )


@pytest.mark.subprocess
def test_plugins_command_lists_json(example_site, python_env, tmp_path):
    python_env["PYTHONPATH"] = str(example_site)
    out = subprocess.run(
        [sys.executable, "-m", "m1_harness", "plugins", "--json"],
        env=python_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert rows["example"]["version"] == "0.1.0"
    table = subprocess.run(
        [sys.executable, "-m", "m1_harness", "plugins"],
        env=python_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "example" in table.stdout and "m1-harness-example-plugin" in table.stdout


@pytest.mark.slow
@pytest.mark.subprocess
def test_example_plugin_end_to_end_through_the_lm_eval_command(example_site, python_env, tmp_path):
    """Installed plugin -> plain `lm_eval` from another directory: its task and its model, exact accuracy."""
    python_env["PYTHONPATH"] = str(example_site)
    lm_eval_bin = str(Path(sys.executable).parent / "lm_eval")
    out = subprocess.run(
        [
            lm_eval_bin,
            "--model",
            "constant_answer",
            "--model_args",
            "letter=B",
            "--tasks",
            "example",
            "--output_path",
            str(tmp_path / "out"),
        ],
        env=python_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    (results,) = (tmp_path / "out").rglob("results_*.json")
    res = json.loads(results.read_text())["results"]
    assert res["example_cardio"]["acc,none"] == 0.5  # 4 of the 8 answers are B
    assert res["example"]["acc,none"] == 0.5
    assert res["example_cardio"]["boxed_share,none"] == 1.0
