"""Moving and comparing table contents between two PostgreSQL connections.

Rows stream from ``COPY ... TO STDOUT`` on the source through an OS pipe into
``COPY ... FROM STDIN`` on the target: a thread feeds the pipe while the target
reads it, so no table is ever held in memory. Checksums run on the servers:
an order-independent sum of each row's md5, so big tables need no sorting and
no memory beyond one row.
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass

from psycopg2 import sql

from handled.ops.tables import Table

PIPE_CHUNK = 256 * 1024

CHECKSUM_SQL = """
    SELECT count(*),
           coalesce(sum(('x' || substr(h, 1, 16))::bit(64)::bigint::numeric), 0),
           coalesce(sum(('x' || substr(h, 17, 16))::bit(64)::bigint::numeric), 0)
    FROM (SELECT md5(ROW({columns})::text) AS h FROM {table}) AS rows"""


@dataclass(frozen=True)
class TableSum:
    """Row count and content checksum of one table, as read on one server."""

    rows: int
    digest: str  # short hex, for people

    def matches(self, other: "TableSum | None") -> bool:
        return other is not None and self == other


def table_checksum(conn, table: Table) -> TableSum:
    query = sql.SQL(CHECKSUM_SQL).format(
        columns=sql.SQL(", ").join(sql.Identifier(c) for c in table.columns), table=table.identifier)
    with conn.cursor() as cur:
        cur.execute(query)
        rows, high, low = cur.fetchone()
    digest = hashlib.sha256(f"{rows}:{high}:{low}".encode()).hexdigest()[:16]
    return TableSum(rows, digest)


def checksums(conn, tables: list[Table]) -> dict[str, TableSum]:
    return {table.qualified: table_checksum(conn, table) for table in tables}


def stream_table(source, target, table: Table) -> None:
    """Copy every row of ``table`` from the source connection into the target's
    table of the same name (same column list), without buffering the table."""
    columns = table.column_list()
    # COPY (SELECT ...) rather than COPY table: the latter refuses partitioned tables
    copy_out = sql.SQL("COPY (SELECT {} FROM {}) TO STDOUT").format(columns, table.identifier).as_string(source)
    copy_in = sql.SQL("COPY {} ({}) FROM STDIN").format(table.identifier, columns).as_string(target)
    read_fd, write_fd = os.pipe()
    failures: list[BaseException] = []

    def produce():
        try:
            with os.fdopen(write_fd, "wb") as sink, source.cursor() as cur:
                cur.copy_expert(copy_out, sink, size=PIPE_CHUNK)
        except BaseException as exc:  # reported by the consumer below
            failures.append(exc)

    producer = threading.Thread(target=produce, name=f"copy-out {table.qualified}", daemon=True)
    producer.start()
    try:
        with os.fdopen(read_fd, "rb") as pipe, target.cursor() as cur:
            cur.copy_expert(copy_in, pipe, size=PIPE_CHUNK)
    finally:
        producer.join()  # closing the read end above unblocks a stuck producer
    if failures:
        raise failures[0]


def sequence_positions(conn, tables: list[Table]) -> dict[str, int]:
    """For each serial sequence: the last value it handed out (0 if never used)."""
    positions = {}
    with conn.cursor() as cur:
        for table in tables:
            for sequence in table.sequences.values():
                cur.execute(sql.SQL("SELECT last_value, is_called FROM {}").format(
                    sql.Identifier(*sequence.split(".", 1))))
                last_value, is_called = cur.fetchone()
                positions[sequence] = last_value if is_called else last_value - 1
    return positions


def restore_sequences(conn, tables: list[Table], positions: dict[str, int]) -> dict[str, int]:
    """Set each target sequence to the source's position, and never below the
    largest id now in its table, so the next insert gets a fresh id."""
    applied = {}
    with conn.cursor() as cur:
        for table in tables:
            for column, sequence in table.sequences.items():
                cur.execute(sql.SQL("SELECT coalesce(max({}), 0) FROM {}").format(
                    sql.Identifier(column), table.identifier))
                position = max(positions.get(sequence, 0), int(cur.fetchone()[0]))
                if position >= 1:
                    cur.execute("SELECT setval(%s, %s, true)", (sequence, position))
                else:
                    cur.execute("SELECT setval(%s, 1, false)", (sequence,))
                applied[sequence] = position
    return applied


APPEND_ONLY_TRIGGER = "audit_log_no_truncate"   # migration 0006 (primary)


def truncate_tables(conn, tables: list[Table]) -> None:
    """Empty the target's tables in the copy's transaction. The audit log is append-only: its
    TRUNCATE trigger is disabled for this one statement, deliberately and inside the same
    transaction (the copy's connection is the target's owner), so a rollback restores it too."""
    if not tables:
        return
    audit = [t for t in tables if (t.schema, t.name) == ("config", "audit_log")]
    with conn.cursor() as cur:
        for table in audit:
            cur.execute(sql.SQL("ALTER TABLE {} DISABLE TRIGGER {}").format(table.identifier,
                                                                          sql.Identifier(APPEND_ONLY_TRIGGER)))
        cur.execute(sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(t.identifier for t in tables)))
        for table in audit:
            cur.execute(sql.SQL("ALTER TABLE {} ENABLE TRIGGER {}").format(table.identifier,
                                                                         sql.Identifier(APPEND_ONLY_TRIGGER)))
