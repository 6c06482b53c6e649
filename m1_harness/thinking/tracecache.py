"""A persistent generation cache, greedy or seeded: budget sweeps for the price of one run, resumable runs.

Why at the engine level: under greedy decoding, what an engine writes from a context depends only on
(model, context ids, stop set); a shorter ``max_tokens`` gives a prefix of a longer run. So each
generate call is stored once, keyed by ``(model identity, decoding, context ids, stop ids, stop
strings)``, and any later call with the same key and a different ``max_tokens`` is served by cutting
the stored one. The budget loop (budget.py) replays through this cache unchanged: a run at a smaller
budget, or with fewer forcing rounds, reaches the same contexts (prompt + markers + thinking +
forcing ids, so markers and forcing string are part of the key through the ids) and gets its
thinking rounds cut from the longer trace, token for token what a fresh run would give; only the
answer phase, whose context is new, goes to the engine. Results are written as soon as each chunk
of requests finishes, so a killed run resumes without regenerating finished requests.

Serving rules for a stored result of n ids (exact under greedy decoding):
- ended on a stop id (kept as the last id): any ``max_tokens >= n`` gets it whole; a smaller one
  gets ``ids[:max_tokens]`` with finish "length".
- ended on ``max_tokens`` (length): any ``max_tokens <= n`` gets the prefix; a larger one is a miss.
- ended on a stop string (ids cut before it): ``max_tokens < n`` gets a prefix; ``max_tokens >= n +
  len(ids of the stop string)`` gets it whole; in between is a miss (the engine may or may not have
  completed the string), so it is regenerated.

Seeded sampling keeps these rules: a call with a seed (``GenRequest.seed``) is sampled from its own
generator by every engine, so its tokens are a function of (context, seed, temperature, top_p) and a
smaller ``max_tokens`` gives a cut of the same tokens. Its key adds the decoding (temperature, top_p)
and the seed, so a sampled call is served only by a call with the same context, seed and decoding,
cut as above: the only kind of hit this cache serves (it never serves a context that extends an
earlier generation, which would hold under greedy decoding only). Unseeded sampling (one shared
stream) has no prefix property: the cache refuses it (``CacheRefused``).

A changed model identity (``model_id``: the engine's ``model_identity``, i.e. what serves the tokens:
the weights' fingerprint in process, a server's model cards) is a different key: always a miss.
Every result is checked (engines/base.check_result) before it is stored: a wrong one is never cached.

The cache is an accelerator, not a result: when it fails mid-run (``database or disk is full``, any
SQLite or OS error) it turns itself off for the rest of the run with one warning (``failed``), serving
and storing nothing more, and the run completes from the engine.

Each row also records the library versions it was generated under (``versions.library_versions``):
a hit generated under other versions is served (same model, same greedy rule) but counted in
``other_version_hits`` and reported, so a reuse across an upgrade is visible, never silent.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import sqlite3
import time
from contextlib import closing
from pathlib import Path
from typing import Any

from m1_harness.errors import UserError
from m1_harness.thinking.engines.base import (
    CAPABILITIES,
    Engine,
    FinishReason,
    GenRequest,
    GenResult,
    as_streaming,
    check_result,
)
from m1_harness.versions import library_versions

log = logging.getLogger(__name__)

CACHE_FILE = "traces.sqlite"  # in the trace-cache folder (cache_dir, default $M1_HARNESS_CACHE/traces)


class CacheRefused(UserError, ValueError):
    pass


def _sampled(decoding: dict) -> bool:
    return float(decoding.get("temperature") or 0.0) > 0 or bool(decoding.get("do_sample"))


def _key(model_id: str, decoding: dict, req: GenRequest) -> str:
    """Greedy: the seed plays no part (engines ignore it), so greedy keys are what they always were."""
    if _sampled(decoding):
        if req.seed is None:
            raise CacheRefused(
                f"the trace cache holds sampled calls only when each has its own seed (decoding {decoding}): "
                "unseeded sampled traces are not prefixes of one another. Pass a seed (seed=S) or cache=off."
            )
        decoding = {**decoding, "seed": int(req.seed)}
    payload = [model_id, decoding, list(req.prompt_ids), sorted(req.stop_token_ids), sorted(req.stop_strings)]
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


class TraceCache:
    """SQLite file of generation results, one row per (model, decoding, seed, context, stop set).

    ``decoding``: the default for ``lookup`` / ``store`` (greedy); a ``CachingEngine`` passes its own."""

    def __init__(self, path: str | Path, model_id: str, decoding: dict | None = None):
        decoding = dict(decoding or {"temperature": 0.0})
        self.path, self.model_id, self.decoding = Path(path), model_id, decoding
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = self._open()
        except sqlite3.DatabaseError as exc:  # not a database, or a damaged one: keep it for inspection
            aside = self.path.with_name(f"{self.path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
            self.path.rename(aside)
            for extra in ("-wal", "-shm"):
                Path(f"{self.path}{extra}").unlink(missing_ok=True)
            log.warning(
                "trace cache %s could not be read (%s): moved it to %s and started a fresh cache", self.path, exc, aside
            )
            self.db = self._open()
        self.versions = json.dumps(library_versions(), sort_keys=True)
        self.hits = self.misses = self.served_tokens = 0
        self.other_version_hits = 0
        self.other_versions: set[str] = set()
        self.failed: str | None = None  # why the cache turned itself off mid-run (None: working)

    def _off(self, exc: Exception) -> None:
        """A storage fault: the cache stops serving and storing for the rest of the run, said once."""
        if self.failed is None:
            self.failed = f"{type(exc).__name__}: {exc}"
            log.warning(
                "m1_budget: the trace cache %s failed (%s): it is off for the rest of this run, which goes on "
                "without it (nothing is lost but reuse); free space or pass another cache_dir for the next run",
                self.path,
                self.failed,
            )

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=60)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS gen (key TEXT PRIMARY KEY, ids TEXT, finish TEXT, stop TEXT,"
                " stop_len INTEGER, versions TEXT)"
            )
            columns = {row[1] for row in db.execute("PRAGMA table_info(gen)")}
            if "versions" not in columns:  # a cache written before versions were recorded
                db.execute("ALTER TABLE gen ADD COLUMN versions TEXT")
            db.execute("SELECT count(*) FROM gen").fetchone()
            db.commit()
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def _get(self, key: str):
        row = self.db.execute("SELECT ids, finish, stop, stop_len, versions FROM gen WHERE key=?", (key,)).fetchone()
        return None if row is None else (json.loads(row[0]), row[1], json.loads(row[2]), row[3], row[4])

    def lookup(self, req: GenRequest, tokenizer, decoding: dict | None = None) -> GenResult | None:
        key = _key(self.model_id, self.decoding if decoding is None else decoding, req)
        if self.failed is not None:
            return None
        try:
            rec = self._get(key)
        except (sqlite3.Error, OSError) as exc:
            self._off(exc)
            return None
        if rec is None:
            return None
        ids, finish, stop, stop_len, versions = rec
        n, m = len(ids), req.max_tokens
        fin: FinishReason
        if finish == "stop" and (m >= n + stop_len):
            out, fin, why = ids, "stop", stop
        elif m < n or (finish == "length" and m == n):
            out, fin, why = ids[:m], "length", None
        else:
            return None
        if versions != self.versions:
            self.other_version_hits += 1
            self.other_versions.add(versions or "{}")
        return GenResult(out, fin, why, tokenizer.decode(out, skip_special_tokens=False))

    def version_note(self) -> str | None:
        """One sentence when hits came from traces generated under other library versions."""
        if not self.other_version_hits:
            return None
        now = json.loads(self.versions)
        changed = set()
        for other in self.other_versions:
            then = json.loads(other)
            changed |= {f"{k} {then.get(k) or '?'} -> {now.get(k)}" for k in now if then.get(k) != now.get(k)}
        return (
            f"{self.other_version_hits} of {self.hits} trace-cache hits were generated under other library "
            f"versions ({'; '.join(sorted(changed))}); pass cache=off or a fresh cache_dir to regenerate them"
        )

    def store(
        self,
        reqs: list[GenRequest],
        results: list[GenResult],
        tokenizer,
        decoding: dict | None = None,
        vocab_size: int | None = None,
        max_model_len: int | None = None,
    ) -> None:
        """Keep the most informative result per key: a stop beats a length, a longer length a shorter.
        Each result is checked first (base.check_result: ``BadResult``, nothing of the call stored)."""
        keys = [_key(self.model_id, self.decoding if decoding is None else decoding, req) for req in reqs]
        for req, res in zip(reqs, results):
            check_result(req, res, vocab_size, max_model_len)
        if self.failed is not None:
            return
        try:
            self._store(keys, results, tokenizer)
        except (sqlite3.Error, OSError) as exc:
            self._off(exc)

    def _store(self, keys: list[str], results: list[GenResult], tokenizer) -> None:
        for key, res in zip(keys, results):
            old = self._get(key)
            if old is not None and (
                old[1] == "stop" or (res.finish_reason == "length" and len(old[0]) >= len(res.token_ids))
            ):
                continue
            stop_len = 0
            if res.finish_reason == "stop" and isinstance(res.stop_reason, str):
                stop_len = len(tokenizer.encode(res.stop_reason, add_special_tokens=False))
            self.db.execute(
                "INSERT OR REPLACE INTO gen (key, ids, finish, stop, stop_len, versions) VALUES (?,?,?,?,?,?)",
                (
                    key,
                    json.dumps(list(res.token_ids)),
                    res.finish_reason,
                    json.dumps(res.stop_reason),
                    stop_len,
                    self.versions,
                ),
            )
        self.db.commit()

    def close(self) -> None:
        self.db.close()


class CachingEngine:
    """Wraps an engine: serve from the cache what it can, generate the rest in chunks, store at once.

    ``decoding``: the engine's sampling settings as a dict (default the cache's: greedy), part of every key."""

    def __init__(self, engine: Engine, cache: TraceCache, chunk_size: int | None = None, decoding: dict | None = None):
        self.engine, self.cache, self.chunk_size = engine, cache, chunk_size
        self.decoding = dict(cache.decoding if decoding is None else decoding)
        self.tokenizer, self.max_model_len = engine.tokenizer, engine.max_model_len
        self._limits = (engine.vocab_size, engine.max_model_len)  # check_result's bounds
        self._asked: dict[object, GenRequest] = {}  # streaming: key -> request sent to the engine
        self._twins: dict[tuple, list[object]] = {}  # streaming: call -> keys waiting for it
        self._ready: list[tuple[object, GenResult]] = []

    def _call(self, req: GenRequest) -> tuple:
        """What makes two requests the same call: key and max_tokens (e.g. a probe's answer and the run's own)."""
        return _key(self.cache.model_id, self.decoding, req), req.max_tokens

    # A streaming engine stays one behind the cache: hits come back from the next poll, each
    # engine result is stored the moment it is finished (so a killed run loses no finished call).
    def __getattr__(self, name: str) -> Any:
        """The wrapped engine's optional capabilities (base.CAPABILITIES), read through at each use: a
        server's ``max_in_flight`` shrinks when a replica stops answering."""
        if name in CAPABILITIES:
            return getattr(self.engine, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _hit(self, req: GenRequest) -> GenResult | None:
        hit = self.cache.lookup(req, self.tokenizer, self.decoding)
        if hit is None:
            self.cache.misses += 1
        else:
            self.cache.hits += 1
            self.cache.served_tokens += len(hit.token_ids)
        return hit

    def submit(self, key: object, request: GenRequest) -> None:
        hit = self._hit(request)
        if hit is not None:
            self._ready.append((key, hit))
            return
        call = self._call(request)
        if call in self._twins:  # the same call is in flight: wait for it, generate once
            self._twins[call].append(key)
            return
        self._twins[call] = [key]
        self._asked[key] = request
        as_streaming(self.engine).submit(key, request)

    def cancel(self) -> None:
        as_streaming(self.engine).cancel()
        self._asked.clear()
        self._twins.clear()
        self._ready.clear()

    def poll(self) -> list[tuple[object, GenResult]]:
        ready, self._ready = self._ready, []
        if ready:
            return ready
        for key, res in as_streaming(self.engine).poll():
            req = self._asked.pop(key)
            self.cache.store([req], [res], self.tokenizer, self.decoding, *self._limits)
            first, *twins = self._twins.pop(self._call(req))
            ready.append((key, res))
            ready += [(k, _free(res)) for k in twins]
        return ready

    def generate(self, requests: list[GenRequest]) -> list[GenResult]:
        results: dict[int, GenResult] = {}  # request index -> its result
        misses: list[int] = []
        twins: list[tuple[int, int]] = []  # (request, the request whose call it shares)
        seen: dict[tuple, int] = {}
        for i, req in enumerate(requests):
            hit = self._hit(req)
            if hit is not None:
                results[i] = hit
                continue
            call = self._call(req)
            if call in seen:  # generated once, below
                twins.append((i, seen[call]))
            else:
                seen[call] = i
                misses.append(i)
        misses.sort(key=lambda i: -len(requests[i].prompt_ids))  # chunks of similar length pad little
        step = self.chunk_size or len(misses) or 1
        for start in range(0, len(misses), step):
            chunk = misses[start : start + step]
            reqs = [requests[i] for i in chunk]
            out = self.engine.generate(reqs)
            self.cache.store(reqs, out, self.tokenizer, self.decoding, *self._limits)
            for i, res in zip(chunk, out):
                results[i] = res
        for i, j in twins:
            results[i] = _free(results[j])
        return [results[i] for i in range(len(requests))]


def _free(res: GenResult) -> GenResult:
    """The same result at no engine cost (a twin of a call generated once)."""
    return dataclasses.replace(
        res, token_ids=list(res.token_ids), context_tokens=0, cached_tokens=0, generated_tokens=0
    )


def count_entries(path: str | Path) -> int:
    """Cached generate calls in a trace-cache file (``m1-harness cache info``); 0 for one that cannot be read."""
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as db:
            return int(db.execute("SELECT count(*) FROM gen").fetchone()[0])
    except sqlite3.DatabaseError:
        return 0
