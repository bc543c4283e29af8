"""Waiting in tests for something that happens in another thread, process or service."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pytest

__all__ = ["wait_until"]

T = TypeVar("T")


def wait_until(
    check: Callable[[], T], timeout: float = 30.0, what: str = "condition", every: float = 0.02
) -> T:
    """Poll ``check`` every ``every`` seconds until it returns something true, and return that;
    fail the test, naming ``what``, if it has not after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)
