"""The stage contract: the ``Stage`` base class and the exceptions a stage raises.

Its own module, below both the runner and the stages, so neither imports the package face.
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
