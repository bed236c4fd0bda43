"""What each migration creates, and whether the catalog agrees with tracking.

A migration's objects are read from its SQL (CREATE SCHEMA / TABLE / INDEX /
SEQUENCE / VIEW, ALTER TABLE ... ADD COLUMN). Comparing them with the catalog
gives each migration one verdict:

- ``applied``         tracked, and every object exists (or it creates none and
                      everything it depends on is applied)
- ``pending``         not tracked, and none of its objects exist
- ``missing``         tracked, but none of its objects exist (safe to unmark)
- ``untracked``       not tracked, but every object exists (safe to mark)
- ``partly-applied``  tracked, some objects missing: cannot be repaired safely
- ``partly-present``  not tracked, some objects exist: cannot be repaired safely

A migration that creates no detectable object (seed data) follows the
migrations it depends on: its rows cannot outlive the tables they were in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

IDENT = r'"?[A-Za-z_][A-Za-z0-9_$]*"?'
QUALIFIED = rf"{IDENT}(?:\.{IDENT})?"
PATTERNS = [
    ("schema", re.compile(rf"CREATE\s+SCHEMA\s+(?:IF\s+NOT\s+EXISTS\s+)?({IDENT})", re.I)),
    ("table", re.compile(rf"CREATE\s+(?:UNLOGGED\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?({QUALIFIED})", re.I)),
    ("index", re.compile(
        rf"CREATE\s+(?:UNIQUE\s+)?INDEX\s+(?:CONCURRENTLY\s+)?(?:IF\s+NOT\s+EXISTS\s+)?({IDENT})\s+ON\s+(?:ONLY\s+)?({QUALIFIED})",
        re.I)),
    ("sequence", re.compile(rf"CREATE\s+SEQUENCE\s+(?:IF\s+NOT\s+EXISTS\s+)?({QUALIFIED})", re.I)),
    ("view", re.compile(rf"CREATE\s+(?:OR\s+REPLACE\s+)?(?:MATERIALIZED\s+)?VIEW\s+({QUALIFIED})", re.I)),
    ("column", re.compile(
        rf"ALTER\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?:ONLY\s+)?({QUALIFIED})\s+ADD\s+(?:COLUMN\s+)?(?:IF\s+NOT\s+EXISTS\s+)?({IDENT})",
        re.I)),
]
COMMENT = re.compile(r"--[^\n]*")


def _bare(name: str) -> str:
    return name.replace('"', "")


PARTITIONED = re.compile(r"\)\s*PARTITION\s+BY\b", re.I)


def _statement_after(sql: str, position: int) -> str:
    end = sql.find(";", position)
    return sql[position:end if end >= 0 else len(sql)]


def objects_created(sql: str) -> list[tuple[str, str]]:
    """(kind, qualified name) of each object the SQL creates, in order.

    A table created ``PARTITION BY`` is of kind ``partitioned``: it exists only
    as a partitioned table, so a migration turning a plain table into one is
    pending until the table really is partitioned."""
    sql = COMMENT.sub("", sql)
    found = []
    for kind, pattern in PATTERNS:
        for match in pattern.finditer(sql):
            if kind == "table" and PARTITIONED.search(_statement_after(sql, match.end())):
                found.append(("partitioned", _bare(match.group(1))))
            elif kind == "index":
                index, table = _bare(match.group(1)), _bare(match.group(2))
                schema = table.split(".")[0] if "." in table else "public"
                found.append((kind, f"{schema}.{index}"))
            elif kind == "column":
                found.append((kind, f"{_bare(match.group(1))}.{_bare(match.group(2))}"))
            else:
                found.append((kind, _bare(match.group(1))))
    return found


def object_exists(cursor, kind: str, name: str) -> bool:
    if kind == "schema":
        cursor.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (name,))
    elif kind == "column":
        schema, table, column = name.split(".")
        cursor.execute(
            "SELECT 1 FROM information_schema.columns WHERE table_schema = %s AND table_name = %s AND column_name = %s",
            (schema, table, column),
        )
    elif kind == "partitioned":
        cursor.execute("SELECT 1 FROM pg_class WHERE oid = to_regclass(%s) AND relkind = 'p'",
                       (_quote_qualified(name),))
    else:
        cursor.execute("SELECT to_regclass(%s)", (_quote_qualified(name),))
        return cursor.fetchone()[0] is not None
    return cursor.fetchone() is not None


def _quote_qualified(name: str) -> str:
    return ".".join(f'"{part}"' for part in name.split("."))


@dataclass
class MigrationState:
    id: str
    tracked: bool
    applied_at: object = None
    objects: list[tuple[str, str]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    verdict: str = "pending"

    def describe(self) -> str:
        total = len(self.objects)
        present = total - len(self.missing)
        shown = ", ".join(self.missing[:5]) + (" …" if len(self.missing) > 5 else "")
        return {
            "applied": f"{self.id} is applied",
            "pending": f"{self.id} is pending",
            "missing": f"{self.id} is tracked as applied but none of its {total} objects exist ({shown})",
            "untracked": f"{self.id} is not tracked but all of its {total} objects exist",
            "partly-applied": f"{self.id} is tracked as applied but {len(self.missing)} of its {total} objects are missing ({shown})",
            "partly-present": f"{self.id} is not tracked but {present} of its {total} objects already exist",
        }[self.verdict]


def migration_sql(migration) -> str:
    with open(migration.path, encoding="utf-8") as handle:
        return handle.read()


def classify_migrations(connection, migrations, applied: dict) -> list[MigrationState]:
    """One MigrationState per migration, in dependency order."""
    states: dict[str, MigrationState] = {}
    with connection.cursor() as cur:
        for migration in migrations:
            objects = objects_created(migration_sql(migration))
            state = MigrationState(migration.id, migration.id in applied, applied.get(migration.id), objects)
            state.missing = [name for kind, name in objects if not object_exists(cur, kind, name)]
            deps_present = all(
                states[d.id].verdict in ("applied", "untracked") for d in migration.depends if d.id in states
            )
            state.verdict = _verdict(state, deps_present)
            states[migration.id] = state
    return list(states.values())


def _verdict(state: MigrationState, deps_present: bool) -> str:
    if not state.objects:
        # Creates nothing we can see (seed rows): follows its dependencies.
        if state.tracked:
            return "applied" if deps_present else "missing"
        return "pending"
    if not state.missing:
        return "applied" if state.tracked else "untracked"
    if len(state.missing) == len(state.objects):
        return "missing" if state.tracked else "pending"
    return "partly-applied" if state.tracked else "partly-present"
