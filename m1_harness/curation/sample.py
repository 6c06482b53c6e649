"""sample: m1K diversity sampling and the paper's ablation variants.

- ``diversity`` (= ``hard_domain_dataset``, m1K): repeat {a domain uniformly, a source dataset
  uniformly within it, an item uniformly without replacement} until ``n`` items;
- ``hard_domain``: a domain uniformly, then an item uniformly within it;
- ``hard_random``: items uniformly from the hard pool;
- ``random``: items uniformly from the whole pool (hard or not).

"Hard" items are those whose ``hard_field`` (default ``hard``, written by the difficulty stage with
``drop: false``) is true; an item without the field counts as hard (it passed a dropping difficulty
stage). Exhausted domains / sources leave the draw; with fewer than ``n`` eligible items all are
taken and the shortfall is reported. Items not selected are listed (id only) in ``dropped.jsonl``
as ``not_sampled`` (the full items stay in the previous stage's output).
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict

from m1_harness.curation.stage import Stage, StageError

VARIANTS = ("diversity", "hard_domain_dataset", "hard_domain", "hard_random", "random")


def _pick(rng: random.Random, pools: dict) -> object:
    keys = sorted(k for k, v in pools.items() if v)
    return keys[rng.randrange(len(keys))] if keys else None


def sample_indices(
    items: list[dict],
    n: int,
    variant: str,
    seed: int,
    *,
    domain_field="domain",
    source_field="source",
    hard_field="hard",
) -> list[int]:
    rng = random.Random(seed)
    hard = variant != "random"
    eligible = [i for i, it in enumerate(items) if not hard or bool(it.get(hard_field, True))]
    if variant in ("random", "hard_random"):
        return rng.sample(eligible, min(n, len(eligible)))
    nested: dict = defaultdict(lambda: defaultdict(list))
    for i in eligible:
        it = items[i]
        src = it.get(source_field) if variant in ("diversity", "hard_domain_dataset") else "*"
        nested[str(it.get(domain_field, "unclassified"))][str(src)].append(i)
    chosen = []
    while len(chosen) < n:
        pools = {d: any(s for s in srcs.values()) for d, srcs in nested.items()}
        d = _pick(rng, pools)
        if d is None:
            break
        s = _pick(rng, nested[d])
        bucket = nested[d][s]
        chosen.append(bucket.pop(rng.randrange(len(bucket))))
    return chosen


class Sample(Stage):
    name = "sample"
    description = "diversity sampling to N items (domain, then source, then item; seeded) and ablation variants"
    defaults = {
        "n": 1000,
        "seed": 42,
        "variant": "diversity",
        "domain_field": "domain",
        "source_field": "source",
        "hard_field": "hard",
    }

    def validate(self) -> None:
        if self.params["variant"] not in VARIANTS:
            raise StageError(f"sample: variant must be one of {VARIANTS}")
        if int(self.params["n"]) < 0:
            raise StageError("sample: n must be >= 0")

    def run(self, ctx, items):
        p = self.params
        idx = sample_indices(
            items,
            int(p["n"]),
            p["variant"],
            int(p["seed"]),
            domain_field=p["domain_field"],
            source_field=p["source_field"],
            hard_field=p["hard_field"],
        )
        picked = set(idx)
        out = []
        for rank, i in enumerate(idx):
            out.append({**items[i], "sample_rank": rank})
        for i, it in enumerate(items):
            if i not in picked:
                ctx.drop(
                    {"id": it.get("id"), "source": it.get(p["source_field"]), "domain": it.get(p["domain_field"])},
                    "not_sampled",
                )
        ctx.report.update(
            {
                "requested": int(p["n"]),
                "selected": len(out),
                "shortfall": max(0, int(p["n"]) - len(out)),
                "by_source": dict(Counter(str(it.get(p["source_field"])) for it in out).most_common()),
                "by_domain": dict(Counter(str(it.get(p["domain_field"])) for it in out).most_common()),
            }
        )
        return out
