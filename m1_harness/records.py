"""The trace record: what m1_budget writes for every request (and sample) it ran, in one schema.

Three things live here and nowhere else:

- ``TraceRecord``, the schema (a TypedDict: readers keep ``rec["x"]``, mypy checks the keys) with
  its ``version``, and ``build_record``, the one place a record is made from a ``Trace``;
- ``TraceFile``, the one writer. Records are results: each is made durable the moment its request
  finishes (a crash loses no finished record), and a storage fault (a full disk) stops the run with
  one sentence naming the file, keeping every record written so far. At the end the run rewrites its
  own records in request order, under an ``fcntl`` lock that every append takes too, so several
  runs may share one file (started together, each keeps all of its records);
- ``read_records``, the one reader: every tool that reads trace files goes through it, and it
  upgrades records of older versions (which have fewer fields) to the current shape.

``item_hash`` is the item identity (a hash of question and options) used to check joins of trace
records with lm-eval samples (analysis), from either a dataset item or an lm-eval doc.
"""

from __future__ import annotations

import copy
import fcntl
import hashlib
import json
import logging
import os
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TypedDict

from m1_harness.errors import UserError
from m1_harness.jsonl import json_lines
from m1_harness.thinking.engines.base import TOKEN_COUNTS
from m1_harness.thinking.request import AUTO, Trace

log = logging.getLogger(__name__)

VERSION = 2  # 1: the records before this schema (no version field, no item identity, no run id)


class TraceRecord(TypedDict):
    """One request's (one sample's) trace: settings as asked, what ran, and what it cost."""

    version: int
    run_id: str  # the writing run's own id: which records of a shared file are whose
    model: str | None  # so analysis never takes the model from whatever lies beside
    task: str | None
    doc_id: int | None  # lm-eval's position of the doc in its task
    item_id: str | None  # the item's own id (the data file's ``id``)
    item_hash: str | None  # item_hash() of its question and options
    sample: int  # j of K samples (0 is what lm-eval scored)
    sample_seed: int | None
    requested_thinking_budget: int | str  # as asked: tokens or "auto"
    forcing: int
    forcing_str: str
    temperature: float
    top_p: float
    markers: str
    # from the Trace (request.py says what each means)
    thinking_budget: int  # the effective budget
    generated_tokens: int
    forced_tokens: int
    forced_positions: list[int]
    forced_counts: list[int]
    rounds: int
    finish_reasons: list[str]
    stop_reasons: list[int | str | None]
    hit_budget: bool
    forcing_skipped: bool
    answer_budget: int
    answer_finish_reason: str
    answer_stop_reason: int | str | None
    text: str
    thinking_span: list[int]
    forced_spans: list[list[int]]
    wall_time: float
    round_tokens: dict[str, list[int]]
    probe_tokens: dict[str, int]
    prompt_tokens: int
    thinking_tokens: int
    answer_tokens: int
    forcing_rounds: int
    # when the context, not the user, decided a budget
    budget_clamped: bool
    requested_answer_budget: int | None
    prompt_too_long: bool


# What a version-1 record lacks, and the value that says so (fields older still: the same defaults).
_UPGRADE: dict[str, Any] = {
    "run_id": None,
    "model": None,
    "task": None,
    "doc_id": None,
    "item_id": None,
    "item_hash": None,
    "sample": 0,
    "sample_seed": None,
    "top_p": 1.0,
    "temperature": 0.0,
    "markers": None,
    "forcing_skipped": False,
    "thinking_span": [],
    "forced_spans": [],
    "wall_time": 0.0,
    "round_tokens": {k: [] for k in TOKEN_COUNTS},
    "probe_tokens": dict.fromkeys(TOKEN_COUNTS, 0),
    "budget_clamped": False,
    "requested_answer_budget": None,
    "prompt_too_long": False,
}


class TraceFileError(UserError, OSError):
    """The trace file could not be written (a full disk, a file-size limit, a vanished folder)."""


def item_hash(question: str, options: Mapping[str, str] | list[tuple[str, str]]) -> str:
    """A stable identity of an item's content: its question and its options (keys and texts, in order)."""
    pairs = list(options.items()) if isinstance(options, Mapping) else [tuple(p) for p in options]
    blob = json.dumps([question.strip(), [[str(k).strip(), str(v).strip()] for k, v in pairs]], ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def item_identity(doc: Mapping[str, Any] | None) -> tuple[str | None, str | None]:
    """(item id, item hash) of a dataset item (``options``) or an m1 task's lm-eval doc (``letters`` and
    ``choices``, taskfns.load_dataset); None for what a doc does not carry (another task's docs)."""
    if not isinstance(doc, Mapping):
        return None, None
    raw_id = doc.get("id", doc.get("idx"))
    question = doc.get("question")
    options = doc.get("options")
    if (
        not isinstance(options, Mapping)
        and isinstance(doc.get("letters"), list)
        and isinstance(doc.get("choices"), list)
    ):
        options = dict(zip(doc["letters"], doc["choices"]))
    digest = item_hash(question, options) if isinstance(question, str) and isinstance(options, Mapping) else None
    return (None if raw_id is None else str(raw_id)), digest


def build_record(
    trace: Trace,
    *,
    run_id: str,
    model: str | None,
    task: str | None,
    doc_id: int | None,
    doc: Mapping[str, Any] | None,
    sample: int,
    sample_seed: int | None,
    requested_thinking_budget: int | str,
    forcing: int,
    forcing_str: str,
    temperature: float,
    top_p: float,
    markers: str,
    requested_answer_budget: int,
) -> TraceRecord:
    """The one builder of a trace record: the run's settings, the item's identity, the trace without
    its (long) id lists, and whether the context, not the user, decided a budget."""
    item_id, digest = item_identity(doc)
    return TraceRecord(
        version=VERSION,
        run_id=run_id,
        model=model,
        task=task,
        doc_id=doc_id,
        item_id=item_id,
        item_hash=digest,
        sample=sample,
        sample_seed=sample_seed,
        requested_thinking_budget=requested_thinking_budget,
        forcing=forcing,
        forcing_str=forcing_str,
        temperature=temperature,
        top_p=top_p,
        markers=markers,
        thinking_budget=trace.thinking_budget,
        generated_tokens=trace.generated_tokens,
        forced_tokens=trace.forced_tokens,
        forced_positions=list(trace.forced_positions),
        forced_counts=list(trace.forced_counts),
        rounds=trace.rounds,
        finish_reasons=list(trace.finish_reasons),
        stop_reasons=list(trace.stop_reasons),
        hit_budget=trace.hit_budget,
        forcing_skipped=trace.forcing_skipped,
        answer_budget=trace.answer_budget,
        answer_finish_reason=trace.answer_finish_reason,
        answer_stop_reason=trace.answer_stop_reason,
        text=trace.text,
        thinking_span=list(trace.thinking_span),
        forced_spans=copy.deepcopy(trace.forced_spans),
        wall_time=trace.wall_time,
        round_tokens=copy.deepcopy(trace.round_tokens),
        probe_tokens=dict(trace.probe_tokens),
        prompt_tokens=len(trace.prompt_ids),
        thinking_tokens=trace.thinking_tokens,
        answer_tokens=len(trace.answer_ids),
        forcing_rounds=trace.forcing_rounds,
        budget_clamped=requested_thinking_budget != AUTO and trace.thinking_budget < int(requested_thinking_budget),
        requested_answer_budget=requested_answer_budget,
        prompt_too_long=requested_answer_budget > 0 and trace.answer_budget == 0,
    )


def new_run_id() -> str:
    return f"{os.getpid()}-{uuid.uuid4().hex[:12]}"


def _line(record: Mapping[str, Any]) -> str:
    return json.dumps(record) + "\n"


class TraceFile:
    """The writer: ``append`` each record as its request finishes, ``finish`` once with all of them.

    Every append opens the file by name under an exclusive ``fcntl`` lock, so it lands in the file
    that is there now even after another run's ``finish`` replaced it; ``finish`` (same lock) keeps
    every line that is not this run's, in place, and puts this run's records after them in request
    order. A write that fails (no space, a size limit) is undone to the last whole record and raised
    as one ``TraceFileError`` sentence; the records before it stay, so a rerun resumes."""

    def __init__(self, path: Path, run_id: str):
        self.path, self.run_id, self.written = path, run_id, 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_path = path.with_name(f".{path.name}.lock")

    def __enter__(self) -> TraceFile:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def _locked(self):
        fh = self._lock_path.open("a")
        fcntl.flock(fh, fcntl.LOCK_EX)
        return fh  # closing it releases the lock

    def _fail(self, exc: OSError) -> TraceFileError:
        reason = exc.strerror or type(exc).__name__
        return TraceFileError(
            f"trace_path={str(self.path)!r}: writing a trace record failed ({reason}); the {self.written} records "
            "finished before it are kept there: free space (or raise the file-size limit) or choose another "
            "trace_path, then run again (finished generate calls come back from the trace cache)"
        )

    def append(self, record: Mapping[str, Any]) -> None:
        data = memoryview(_line(record).encode("utf-8"))
        try:
            with self._locked():
                fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)  # unbuffered: undo is exact
                try:
                    size = os.fstat(fd).st_size
                    if size and os.pread(fd, 1, size - 1) != b"\n":  # a writer killed mid-line: start a new one
                        data = memoryview(b"\n" + bytes(data))
                    try:
                        while data:
                            data = data[os.write(fd, data) :]
                    except OSError:
                        os.ftruncate(fd, size)  # no half record left behind
                        raise
                finally:
                    os.close(fd)
        except OSError as exc:
            raise self._fail(exc) from None
        self.written += 1

    def finish(self, records: list[TraceRecord]) -> None:
        """This run's records in request order after every other line; nothing is lost if it fails."""
        tmp = self.path.with_name(f".{self.path.name}.tmp{os.getpid()}")
        try:
            with self._locked():
                others = [ln for ln in _lines(self.path) if _run_of(ln) != self.run_id]
                try:
                    with tmp.open("w", encoding="utf-8") as fh:
                        fh.writelines(others)
                        fh.writelines(_line(r) for r in records)
                        fh.flush()
                        os.fsync(fh.fileno())
                    os.replace(tmp, self.path)
                finally:
                    if tmp.exists():
                        tmp.unlink()
        except OSError as exc:
            raise self._fail(exc) from None


def _lines(path: Path) -> list[str]:
    try:
        with path.open(encoding="utf-8") as fh:
            return [ln if ln.endswith("\n") else ln + "\n" for ln in fh if ln.strip()]
    except FileNotFoundError:
        return []


def _run_of(line: str) -> str | None:
    try:
        rec = json.loads(line)
    except json.JSONDecodeError:
        return None
    return rec.get("run_id") if isinstance(rec, dict) else None


def upgrade(rec: dict[str, Any]) -> TraceRecord:
    """A record of any version in the current shape: the fields an older writer did not write get the
    value that says they are unknown (version 1: no item identity, run id, ...)."""
    out = {k: copy.deepcopy(v) for k, v in _UPGRADE.items()}
    out.update(rec)
    out["version"] = int(rec.get("version", 1))
    return out  # type: ignore[return-value]


def read_records(path: str | os.PathLike[str]) -> Iterator[TraceRecord]:
    """The trace records of a JSONL trace file, upgraded to the current shape; malformed lines and
    other JSON objects are skipped with one warning each."""
    for number, rec in json_lines(path):
        if not (isinstance(rec, dict) and "thinking_tokens" in rec):
            continue
        version = rec.get("version", 1)
        if isinstance(version, bool) or not isinstance(version, int):  # a hand edit: int('2b') was a traceback
            log.warning("skipping %s:%d: its version %r is not a whole number", path, number, version)
            continue
        yield upgrade(rec)
