"""Small words shared by pages, messages and the CLI: counts with the right plural, short durations."""

from __future__ import annotations


def how_many(n: int, noun: str, plural: str | None = None) -> str:
    """ "1 row", "2,345 rows" (``plural`` when adding an s is wrong)."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"


def short_duration(seconds: float | None) -> str:
    """How long a run took: "under 0.1 s", "0.4 s", "38 s", "4 min 12 s"; "" when unknown."""
    if seconds is None:
        return ""
    if seconds < 0.1:
        return "under 0.1 s"
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    return f"{int(seconds // 60)} min {int(seconds % 60)} s"
