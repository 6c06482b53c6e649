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

from typing import Any

from m1_harness.errors import UserError


class Drop(Exception):
    """Raised by ``Stage.process``: the item is filtered out on purpose (``dropped.jsonl``)."""

    def __init__(self, reason: str, **info: Any):
        super().__init__(reason)
        self.reason = reason
        self.info = info


class Reject(Exception):
    """Raised by ``Stage.process``: the item is bad (``rejected.jsonl``)."""

    def __init__(self, reason: str, **info: Any):
        super().__init__(reason)
        self.reason = reason
        self.info = info


class StageError(UserError, RuntimeError):
    """A stage could not run (bad parameters, unreachable data, items that failed)."""


class Stage:
    """Base class of curation stages.

    Subclasses set ``name``, ``defaults`` (every accepted parameter with its default; unknown
    parameters are an error) and ``version`` (bump it when the output for the same parameters
    changes, so finished work is redone). Parameters arrive as keyword arguments and live in
    ``self.params``.
    """

    name: str = "stage"
    version: int = 1
    defaults: dict[str, Any] = {}
    per_item: bool = False
    description: str = ""

    def __init__(self, **params: Any):
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            raise StageError(
                f"stage {self.name!r}: unknown parameter(s) {', '.join(unknown)}; "
                f"accepted: {', '.join(sorted(self.defaults)) or '(none)'}"
            )
        self.params = {**self.defaults, **params}
        self.validate()

    def validate(self) -> None:
        """Check ``self.params``; raise ``StageError`` with a clear message."""

    def fingerprint_extra(self) -> dict:
        """Extra state the output depends on besides the parameters (e.g. input file stamps)."""
        return {}

    @property
    def concurrency(self) -> int:
        return int(self.params.get("concurrency", 1) or 1)

    # batch stages
    def run(self, ctx, items: list[dict]) -> list[dict]:
        if not self.per_item:
            raise NotImplementedError(f"stage {self.name!r} implements neither run() nor process()")
        raise StageError("per-item stages are run by the runner")

    # per-item stages
    def setup(self, ctx) -> None:
        """Called once before ``process`` (open clients, caches)."""

    def process(self, ctx, item: dict) -> dict:
        raise NotImplementedError

    def teardown(self, ctx) -> None:
        """Called once after the last item (also after a failure)."""

    def finish(self, ctx, items_out: list[dict]) -> None:
        """Called with every kept item (resumed ones included) before the stage is saved: reports."""


from m1_harness.curation.runner import Context, RecipeResult, load_recipe, run_recipe  # noqa: E402

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
