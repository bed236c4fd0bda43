"""Names of the tables a build uses for a while and then drops: the one test of "scratch".

A transformation builds ``reference._build_<target>`` beside the live table and
renames the live one to ``_old_<target>`` at the swap (transformations/build_plan.py).
Those two prefixes, and nothing else, are scratch: the drift check, the backups,
the split/unsplit copies and the tests' cleanup skip or drop exactly the tables
``is_scratch`` names, so a cleanup can never touch a live table or a live
partition (live partitions are named ``<target>__p<generation>_<slice>``, which no
scratch prefix matches; a partition always counts as part of its parent table).
"""

from __future__ import annotations

BUILD_PREFIX = "_build_"
OLD_PREFIX = "_old_"
SCRATCH_PREFIXES = (BUILD_PREFIX, OLD_PREFIX)
# For SQL filters over pg_tables/pg_class: LIKE patterns with '_' escaped.
SCRATCH_LIKE_PATTERNS = tuple(prefix.replace("_", "\\_") + "%" for prefix in SCRATCH_PREFIXES)


def is_scratch(table_name: str) -> bool:
    """True for a table a build made and will drop (or a killed build left behind)."""
    return table_name.startswith(SCRATCH_PREFIXES)


def build_name(name: str) -> str:
    return BUILD_PREFIX + name


def old_name(name: str) -> str:
    return OLD_PREFIX + name
