"""Waiting for a condition, never for a length of time: a bounded poll. Not a test module."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float = 120.0, what: str = "") -> T:
    """``predicate()``'s first truthy value, polled every 50 ms; AssertionError after
    ``timeout`` seconds (a bound for a hung process, not a timing the test relies on)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting{' for ' + what if what else ''}")
