"""dedup and decontaminate: near-duplicate removal within the pool and against the eval sets."""

from __future__ import annotations

import glob
import os
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from m1_harness.curation import neardup
from m1_harness.curation.items import normalise, read_jsonl
from m1_harness.curation.stage import Stage, StageError
from m1_harness.paths import DATA_ENV

LSH_DEFAULTS = {"shingle": 5, "num_perm": 128, "bands": 21, "rows": 6}


def _lsh_params(params: dict) -> dict:
    return {"k": params["shingle"], "num_perm": params["num_perm"], "bands": params["bands"], "rows": params["rows"]}


def _check_lsh(stage: str, p: dict) -> None:
    if p["num_perm"] & (p["num_perm"] - 1) or p["num_perm"] <= 0:
        raise StageError(f"{stage}: num_perm must be a power of two")
    if p["bands"] * p["rows"] > p["num_perm"]:
        raise StageError(f"{stage}: bands * rows must not exceed num_perm")


class Dedup(Stage):
    name = "dedup"
    description = "drop near-duplicate questions (rapidfuzz ratio >= threshold on the normalised question)"
    defaults = {"threshold": 95.0, "field": "question", "method": "lsh", **LSH_DEFAULTS}

    def validate(self) -> None:
        if self.params["method"] not in ("lsh", "exact"):
            raise StageError("dedup: method must be 'lsh' or 'exact'")
        _check_lsh("dedup", self.params)

    def run(self, ctx, items):
        p = self.params
        texts = [normalise(str(it.get(p["field"], ""))) for it in items]
        dropped, stats = neardup.find_duplicates(
            texts, threshold=float(p["threshold"]), method=p["method"], **_lsh_params(p)
        )
        out = []
        by_pair = Counter()
        for i, item in enumerate(items):
            if i in dropped:
                j, score = dropped[i]
                ctx.drop(item, "duplicate", duplicate_of=items[j]["id"], score=round(float(score), 2))
                by_pair[(item.get("source"), items[j].get("source"))] += 1
            else:
                out.append(item)
        stats["dropped_by_source_pair"] = {f"{a} ~ {b}": c for (a, b), c in by_pair.most_common()}
        ctx.report.update(stats)
        return out


def eval_files(spec) -> dict[str, Path]:
    """eval set name -> file, from a directory, a file, a glob or a list of those; default
    ``$M1_HARNESS_DATA`` (a directory of ``<benchmark>.jsonl``)."""
    if spec in (None, "", []):
        spec = os.environ.get(DATA_ENV)
        if not spec:
            raise StageError(f"decontaminate: no 'eval_sets' given and ${DATA_ENV} is not set")
    out: dict[str, Path] = {}
    for entry in [spec] if isinstance(spec, str) else list(spec):
        p = Path(entry)
        if p.is_dir():
            files = sorted(p.glob("*.jsonl"))
        elif p.is_file():
            files = [p]
        else:
            files = [Path(f) for f in sorted(glob.glob(str(entry)))]
        if not files:
            raise StageError(f"decontaminate: no eval set found at {entry!r}")
        for f in files:
            out[f.stem] = f
    return out


def _word_ngrams(text: str, n: int) -> set:
    words = text.split()
    if len(words) < n:
        return {tuple(words)} if words else set()
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


class Decontaminate(Stage):
    name = "decontaminate"
    description = "drop items that overlap the evaluation sets (fuzzy ratio and word n-grams), reported per eval set"
    defaults = {
        "eval_sets": None,
        "limit_per_set": None,
        "field": "question",
        "fuzzy_threshold": 95.0,
        "ngram": 13,
        "ngram_min_fraction": 0.5,
        **LSH_DEFAULTS,
    }

    def validate(self) -> None:
        _check_lsh("decontaminate", self.params)
        if int(self.params["ngram"]) < 0:
            raise StageError("decontaminate: ngram must be >= 0 (0 turns the n-gram check off)")

    def fingerprint_extra(self) -> dict:
        try:
            files = eval_files(self.params["eval_sets"])
        except StageError:
            return {}
        return {name: [str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns] for name, f in files.items()}

    def run(self, ctx, items):
        p = self.params
        files = eval_files(p["eval_sets"])
        evals: list[tuple[str, str, str]] = []  # (set, id, normalised text)
        for name, f in files.items():
            for n, it in enumerate(read_jsonl(f)):
                if p["limit_per_set"] is not None and n >= int(p["limit_per_set"]):
                    break
                evals.append((name, str(it.get("id", f"{name}-{n}")), normalise(str(it.get(p["field"], "")))))
        texts = [normalise(str(it.get(p["field"], ""))) for it in items]
        hits: dict[int, dict] = {}
        # 1. fuzzy: LSH candidates between pool and eval texts, verified with fuzz.ratio
        eval_texts = [e[2] for e in evals]
        lsh = _lsh_params(p)
        sig_a = neardup.signatures(texts, k=lsh["k"], num_perm=lsh["num_perm"])
        sig_b = neardup.signatures(eval_texts, k=lsh["k"], num_perm=lsh["num_perm"])
        cands = neardup.cross_candidates(sig_a, sig_b, lsh["bands"], lsh["rows"])
        lens_a = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
        lens_b = np.fromiter((len(t) for t in eval_texts), dtype=np.int64, count=len(eval_texts))
        fuzzy = neardup.verify(
            neardup.length_filter(cands, lens_a, lens_b, float(p["fuzzy_threshold"])),
            texts,
            eval_texts,
            float(p["fuzzy_threshold"]),
        )
        for i, j, s in sorted(fuzzy, key=lambda t: (t[0], -t[2])):
            if i not in hits:
                hits[i] = {"method": "fuzzy", "eval_set": evals[j][0], "eval_id": evals[j][1], "score": round(s, 2)}
        # 2. word n-gram overlap: flagged when the pool text holds at least ``ngram_min_fraction`` of
        #    an eval question's n-grams (one shared 13-gram is common boilerplate in USMLE vignettes,
        #    e.g. vital signs); a text shorter than n words is one n-gram (so it matches only whole)
        n = int(p["ngram"])
        ngram_hits = 0
        if n > 0:
            index: dict[tuple, list[int]] = defaultdict(list)
            eval_grams = []
            for j, t in enumerate(eval_texts):
                grams = _word_ngrams(t, n)
                eval_grams.append(max(1, len(grams)))
                for g in grams:
                    index[g].append(j)
            frac = float(p["ngram_min_fraction"])
            for i, t in enumerate(texts):
                grams = _word_ngrams(t, n)
                matched = Counter()
                for g in grams:
                    for j in index.get(g, ()):
                        matched[j] += 1
                best = [(c / eval_grams[j], j) for j, c in matched.items() if c / eval_grams[j] >= frac]
                if best:
                    ngram_hits += 1
                    f, j = max(best)
                    if i not in hits:
                        hits[i] = {
                            "method": "ngram",
                            "eval_set": evals[j][0],
                            "eval_id": evals[j][1],
                            "ngram_fraction": round(f, 3),
                        }
        per_set = {
            name: {
                "eval_items": sum(1 for e in evals if e[0] == name),
                "contaminated": 0,
                "fuzzy": 0,
                "ngram": 0,
                "examples": [],
            }
            for name in files
        }
        out = []
        for i, item in enumerate(items):
            h = hits.get(i)
            if h is None:
                out.append(item)
                continue
            ctx.drop(item, "contaminated", **h)
            rep = per_set[h["eval_set"]]
            rep["contaminated"] += 1
            rep[h["method"]] += 1
            if len(rep["examples"]) < 10:
                rep["examples"].append({"id": item["id"], **h})
        ctx.report.update(
            {
                "eval_sets": {k: str(v) for k, v in files.items()},
                "candidate_pairs": int(len(cands)),
                "fuzzy_pairs": len(fuzzy),
                "ngram_matches": ngram_hits,
                "per_eval_set": per_set,
            }
        )
        return out
