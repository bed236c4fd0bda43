"""The one way a test waits for something another thread or process does: poll until it holds."""

from __future__ import annotations

import time


def wait_until(condition, timeout: float = 30.0, message: str = "condition", interval: float = 0.05):
    """Call ``condition()`` until it returns something true and return that; after ``timeout``
    seconds fail with "timed out waiting for <message>". Never a fixed sleep before an assertion:
    a fast machine passes at once and a slow one gets the whole deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out waiting for {message}")
        time.sleep(interval)
