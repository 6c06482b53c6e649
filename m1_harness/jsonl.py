"""Reading JSONL files that appends and interrupted runs write: one home for skipping what is not a
whole JSON line, so trace files and lm-eval's samples files are read by the same rule."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from typing import Any

log = logging.getLogger(__name__)


def json_lines(path: str | os.PathLike[str]) -> Iterator[tuple[int, Any]]:
    """(line number, parsed value) of every non-blank line of ``path``; a malformed line (a run
    interrupted while writing it) is skipped with one warning naming the file and line."""
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError:
                log.warning("skipping a malformed line in %s:%d (a run interrupted while writing it?)", path, number)
