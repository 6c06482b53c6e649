"""The curation item schema and JSONL helpers.

An item is the evaluation layout plus ``source``: ``id``, ``question``, ``options`` (letter ->
text), ``answer_idx`` (letter), ``answer`` (``options[answer_idx]``), ``source``. Stages add
fields (``difficulty``, ``teacher``, ``domain``...) and never remove these.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

REQUIRED = ("id", "question", "options", "answer_idx", "answer", "source")
LETTERS = "ABCDEFGHIJ"


def problems(item: dict) -> list[str]:
    """Why ``item`` is not a valid curation item (an empty list when it is)."""
    out = []
    if not isinstance(item, dict):
        return ["not_an_object"]
    for key in REQUIRED:
        if key not in item or item[key] in (None, ""):
            out.append(f"missing_{key}")
    q = item.get("question")
    if q is not None and (not isinstance(q, str) or not q.strip()):
        out.append("empty_question")
    opts = item.get("options")
    if opts is not None:
        if not isinstance(opts, dict) or len(opts) < 2:
            out.append("bad_options")
        else:
            for k, v in opts.items():
                if not (isinstance(k, str) and len(k) == 1 and k in LETTERS):
                    out.append(f"bad_option_letter:{k}")
                if not isinstance(v, str) or not v.strip():
                    out.append(f"empty_option:{k}")
    idx = item.get("answer_idx")
    if idx not in (None, "") and isinstance(opts, dict) and idx not in opts:
        out.append(f"unknown_answer_letter:{idx}")
    if (
        isinstance(opts, dict)
        and idx in opts
        and item.get("answer") not in (None, "")
        and item["answer"].strip() != str(opts[idx]).strip()
    ):
        out.append("answer_text_mismatch")
    return out


_WS = re.compile(r"\s+")
_PUNCT = re.compile(r"[^\w\s]")


def normalise(text: str) -> str:
    """Lower case, punctuation dropped, whitespace collapsed: the text dedup compares."""
    return _WS.sub(" ", _PUNCT.sub(" ", text.lower())).strip()


def read_jsonl(path: str | Path) -> Iterator[dict]:
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{n}: not JSON: {exc}") from exc


def read_jsonl_tolerant(path: str | Path) -> list[dict]:
    """Read a checkpoint written by appends: a torn last line (a crash mid-write) is ignored."""
    out = []
    if not Path(path).exists():
        return out
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def write_jsonl(path: str | Path, items: Iterable[dict]) -> int:
    """Write atomically (temp file + rename); return the number of lines."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    n = 0
    with open(tmp, "w", encoding="utf-8") as fh:
        for item in items:
            fh.write(json.dumps(item, ensure_ascii=False) + "\n")
            n += 1
    os.replace(tmp, path)
    return n


def dumps(obj) -> str:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
