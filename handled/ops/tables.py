"""What the operations tools move and compare: the tables of one side (primary
or data), in foreign-key order, their columns and their serial sequences."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from psycopg2 import sql

from handled.models import SCHEMAS
from handled.schema.migrations import MIGRATIONS_DIR
from handled.ops import OpsError
from handled.schema.names import SCRATCH_LIKE_PATTERNS

# Text output that does not depend on a server's or session's defaults, so a
# row prints the same on every connection (COPY text and checksums).
SESSION_SETTINGS = ("SET TimeZone = 'UTC'", "SET DateStyle = 'ISO, YMD'", "SET IntervalStyle = 'postgres'",
                    "SET extra_float_digits = 3", "SET bytea_output = 'hex'")

TABLES_SQL = """
    SELECT c.oid, n.nspname, c.relname
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND n.nspname = ANY(%s)
      AND NOT c.relname LIKE ANY(%s)
    ORDER BY n.nspname, c.relname"""

EDGES_SQL = """
    SELECT conrelid, confrelid FROM pg_constraint
    WHERE contype = 'f' AND conrelid = ANY(%s) AND confrelid = ANY(%s) AND conrelid <> confrelid"""

COLUMNS_SQL = """
    SELECT attname, pg_get_serial_sequence(%s, attname)
    FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped
    ORDER BY attnum"""

PRIMARY_KEY_SQL = """
    SELECT a.attname FROM pg_index i
    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
    WHERE i.indrelid = %s::regclass AND i.indisprimary ORDER BY array_position(i.indkey, a.attnum)"""


@dataclass
class Table:
    schema: str
    name: str
    columns: list[str] = field(default_factory=list)
    primary_key: list[str] = field(default_factory=list)
    sequences: dict[str, str] = field(default_factory=dict)  # column -> sequence name

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def identifier(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)

    def column_list(self) -> sql.Composed:
        return sql.SQL(", ").join(sql.Identifier(c) for c in self.columns)


def side_schemas(side: str) -> tuple[str, ...]:
    if side not in SCHEMAS:
        raise OpsError(f"Unknown side {side!r}; use primary or data.")
    return SCHEMAS[side]


def prepare_session(conn) -> None:
    """Fix the settings that change how values print (see SESSION_SETTINGS)."""
    with conn.cursor() as cur:
        for statement in SESSION_SETTINGS:
            cur.execute(statement)


def tables_in_order(conn, side: str) -> list[Table]:
    """The side's tables, each after every table it references (so COPY never
    meets a missing parent). A partitioned table is one table (its partitions, whatever
    their names, are copied and checksummed through it); scratch tables
    (handled.schema.names) are skipped."""
    with conn.cursor() as cur:
        cur.execute(TABLES_SQL, (list(side_schemas(side)), list(SCRATCH_LIKE_PATTERNS)))
        found = {oid: Table(schema, name) for oid, schema, name in cur.fetchall()}
        oids = list(found)
        cur.execute(EDGES_SQL, (oids, oids))
        parents: dict[int, set[int]] = {oid: set() for oid in found}
        for child, parent in cur.fetchall():
            parents[child].add(parent)
    ordered: list[Table] = []
    done: set[int] = set()
    while len(done) < len(found):
        ready = sorted((oid for oid in found if oid not in done and parents[oid] <= done),
                       key=lambda oid: found[oid].qualified)
        if not ready:
            cycle = ", ".join(found[oid].qualified for oid in found if oid not in done)
            raise OpsError(f"The foreign keys between {cycle} form a cycle; handled cannot order their copy.")
        for oid in ready:
            done.add(oid)
            ordered.append(found[oid])
    for table in ordered:
        describe_table(conn, table)
    return ordered


def describe_table(conn, table: Table) -> Table:
    with conn.cursor() as cur:
        cur.execute(COLUMNS_SQL, (table.qualified, table.qualified))
        for column, sequence in cur.fetchall():
            table.columns.append(column)
            if sequence:
                table.sequences[column] = sequence
        cur.execute(PRIMARY_KEY_SQL, (table.qualified,))
        table.primary_key = [row[0] for row in cur.fetchall()]
    return table


def seeded_tables(side: str) -> set[str]:
    """Tables the side's seed migrations fill: present even in a fresh database."""
    pattern = re.compile(r"INSERT\s+INTO\s+([a-z_]+\.[a-z_]+)", re.IGNORECASE)
    found = set()
    for path in (MIGRATIONS_DIR / side).glob("*.sql"):
        if not path.name.endswith(".rollback.sql"):
            found.update(m.lower() for m in pattern.findall(path.read_text()))
    return found


def row_counts(conn, tables: list[Table]) -> dict[str, int]:
    counts = {}
    with conn.cursor() as cur:
        for table in tables:
            cur.execute(sql.SQL("SELECT count(*) FROM {}").format(table.identifier))
            counts[table.qualified] = cur.fetchone()[0]
    return counts
