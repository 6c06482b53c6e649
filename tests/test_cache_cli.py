"""`m1-harness cache info|clear` (issue 25, item 4): where the shared trace cache is, what it holds, emptying it."""

from __future__ import annotations

from m1_harness import cli
from m1_harness.thinking.engines.base import GenRequest, GenResult
from m1_harness.thinking.tracecache import CACHE_FILE, TraceCache


class _Tok:
    def decode(self, ids, **kw):
        return "".join(chr(65 + i) for i in ids)


def test_info_then_clear(tmp_path, monkeypatch, capsys):
    root = tmp_path / "cache"
    monkeypatch.setenv("M1_HARNESS_CACHE", str(root))
    assert cli.main(["cache", "info"]) == 0
    assert capsys.readouterr().out.splitlines()[:2] == [
        f"cache folder: {root} (set M1_HARNESS_CACHE to move it)",
        "  traces/: trace cache, empty, 0.0 MB",
    ]
    cache = TraceCache(root / "traces" / CACHE_FILE, "model@rev")
    cache.store(
        [GenRequest([1, 2, 3], 1), GenRequest([5], 2)],
        [GenResult([1], "length", None, "B"), GenResult([2, 3], "length", None, "CD")],
        _Tok(),
    )
    cache.close()
    (root / "models").mkdir()
    assert cli.main(["cache", "info"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].startswith("  traces/: trace cache, 2 cached generate calls, ")
    assert out[2:] == [
        "  models/: 0.0 MB",
        "`m1-harness cache clear` empties the trace cache (--all: the whole folder)",
    ]
    assert cli.main(["cache", "clear"]) == 0
    assert capsys.readouterr().out.startswith(f"removed {root / 'traces'} (")
    assert not (root / "traces").exists() and (root / "models").is_dir()
    assert cli.main(["cache", "clear", "--all"]) == 0
    assert not root.exists()
