"""Web side of operations: the DATA banner, and (issue 7) the System page and /metrics."""

from __future__ import annotations

from handled.ops import degraded


def init_app(app) -> None:
    degraded.init_app(app)
