"""Waiting on a condition instead of sleeping for a guessed time: a test goes on the moment the state it
needs holds (fast on an idle machine, still right on a loaded one) and fails naming what never came."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(condition: Callable[[], T], within: float, what: str, every: float = 0.02) -> T:
    """Poll ``condition`` until it returns something true (returned); after ``within`` seconds, fail."""
    deadline = time.monotonic() + within
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"waited {within:g} s for {what}")
        time.sleep(every)
