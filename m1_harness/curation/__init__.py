"""Data curation as plugin stages (the m1K / m23K pipeline of M1_REFERENCE.md, "Data curation").

A *stage* transforms a list of items (``m1_harness.curation.items``) into another. Stages are
registered through the ``m1_register_stages`` hook and chained by a recipe YAML that
``m1-harness curate`` runs (``m1_harness.curation.runner``). Two kinds:

- batch stages override ``run(ctx, items) -> items`` (dedup, sample, ...);
- per-item stages set ``per_item = True`` and override ``process(ctx, item) -> item``; the runner
  calls it (optionally from ``concurrency`` threads) and appends every finished item to a
  checkpoint at once, so a crash loses at most the items in flight.

Either kind says why an item leaves: ``raise Drop(reason)`` / ``ctx.drop(item, reason)`` for items
filtered on purpose (duplicates, answered correctly, ...) and ``raise Reject(reason)`` /
``ctx.reject(item, reason)`` for bad items (missing fields, unknown answer letter, unparseable
teacher output). Both are written with their ids next to the stage output and counted in
``_done.json``; nothing is lost silently.
"""

from __future__ import annotations

from m1_harness.curation.runner import Context, RecipeResult, load_recipe, run_recipe
from m1_harness.curation.stage import Drop, Reject, Stage, StageError

__all__ = [
    "Context",
    "Drop",
    "RecipeResult",
    "Reject",
    "Stage",
    "StageError",
    "load_recipe",
    "run_recipe",
]
