"""M1_HARNESS_CACHE pointing at a file (hostile2 finding): one sentence naming the setting."""

from __future__ import annotations

import pytest

from m1_harness.paths import OutputError, cache_dir


def test_a_cache_setting_that_is_a_file_names_the_setting(tmp_path, monkeypatch):
    """mkdir's NotADirectoryError was a traceback out of m1_budget's start (and benchmarks, demo, owned)."""
    target = tmp_path / "cachefile"
    target.write_text("x")
    monkeypatch.setenv("M1_HARNESS_CACHE", str(target))
    with pytest.raises(OutputError) as err:
        cache_dir("traces")
    assert str(err.value) == (
        f"M1_HARNESS_CACHE={str(target)!r} cannot be written ({str(target)!r} is a file, not a folder): "
        "choose a folder you can write to"
    )
    monkeypatch.setenv("M1_HARNESS_CACHE", str(tmp_path / "fine"))
    assert cache_dir("traces") == tmp_path / "fine" / "traces" and (tmp_path / "fine" / "traces").is_dir()
