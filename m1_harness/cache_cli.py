"""``m1-harness cache info|clear``: where the trace cache lives, what it holds, and emptying it.

The trace cache (``$M1_HARNESS_CACHE/traces``, default ``~/.cache/m1_harness/traces``) is shared by
every run of the user: a rerun, or a first demo after an earlier one, is answered from it without
generating. ``clear`` removes the trace cache only; ``--all`` also the other folders there (the
demo model's converted checkpoint, server logs, generated task folders), which are rebuilt on use.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from m1_harness.paths import CACHE_ENV, cache_root
from m1_harness.thinking.tracecache import CACHE_FILE, count_entries

TRACES = "traces"


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else 0


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def add_arguments(parser) -> None:
    parser.add_argument("action", choices=["info", "clear"], help="info: where and how much; clear: empty it")
    parser.add_argument("--all", action="store_true", help="clear: every folder of the cache, not only traces")


def run(args) -> int:
    root = cache_root()
    traces = root / TRACES
    if args.action == "info":
        print(f"cache folder: {root} (set {CACHE_ENV} to move it)")
        db = traces / CACHE_FILE
        held = f"{count_entries(db)} cached generate calls, " if db.is_file() else "empty, "
        print(f"  {TRACES}/: trace cache, {held}{_mb(_size(traces))}")
        for sub in sorted(p for p in root.iterdir() if p.is_dir() and p.name != TRACES) if root.is_dir() else []:
            print(f"  {sub.name}/: {_mb(_size(sub))}")
        print("`m1-harness cache clear` empties the trace cache (--all: the whole folder)")
        return 0
    target = root if args.all else traces
    if not target.exists():
        print(f"{target}: nothing to clear")
        return 0
    size = _size(target)
    shutil.rmtree(target)
    print(f"removed {target} ({_mb(size)})")
    return 0
