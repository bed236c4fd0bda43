"""Build export bytes from the DATA database (no PRIMARY access here).

CSV files are PostgreSQL's own ``COPY ... TO STDOUT`` output (text columns
neutralised against spreadsheet formulas, see handled/formula_cells.py), written straight
to a file or handed chunk by chunk to an HTTP response through a small bounded
queue, so an 11M-row table never sits in memory. The JSON files are small
(about 900 × 900 numbers at most) and are built in SQL. The zone matrices read
``reference.ground_days``, which the delivery-matrix build derives and swaps in
with the matrix (~810,000 rows, read in key order: well under a second); when it
does not describe the live matrix (built before it existed, or the two were
written apart) they aggregate the 11M-row matrix itself, slower but the same bytes.

An export whose table is missing from DATA (not migrated) says so in a sentence.

How many rows were written is reported through the caller's progress sink
(``report_rows``), the one protocol of handled/context.py: COPY only knows its
row count when it ends, so that is the one report of a file.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from handled.context import Progress
from handled.db import data_db, quiet_queries, release_connections
from handled.errors import Unavailable
from handled.exports.registry import Export
from handled.formula_cells import neutralised_sql
from handled.transformations.build_plan import current_together
from handled.transformations.registry import GROUND_SERVICES, get_transformation, ground_bit, ground_column

log = logging.getLogger("handled.exports")

SQL_DIR = Path(__file__).resolve().parent / "sql"
CHUNK_BYTES = 256 * 1024
QUEUE_CHUNKS = 8              # at most ~2 MB in flight per download
WRITE_PHASE = "write"


def _sql(name: str) -> str:
    return (SQL_DIR / name).read_text()


class TableMissing(Unavailable):
    """A reference table an export reads is not in the DATA database."""


def require_tables(export: Export) -> None:
    """Refuse, in a sentence, an export whose reference table is missing (DATA not migrated)."""
    cursor = data_db.execute_sql("SELECT t FROM unnest(%s::text[]) AS t WHERE to_regclass('reference.' || t) IS NULL",
                                 [list(export.tables)])
    missing = [row[0] for row in cursor.fetchall()]
    if missing:
        raise TableMissing(f"{export.id} cannot be written: the DATA database has no table reference.{missing[0]}.",
                           hint="Its migrations have not been applied; ask an administrator to migrate the DATA "
                                "database and run the transformations.")


def report_rows(progress: Progress, export: Export, rows: int) -> None:
    """Say that the whole of ``export`` is written: ``rows`` rows (cells for a zone matrix)."""
    progress(WRITE_PHASE, rows, rows, f"{export.id}: {rows} rows written")


def count_rows(table: str) -> int:
    """count(*) of a (small) reference table."""
    from psycopg2 import sql

    with quiet_queries():
        cursor = data_db.cursor()
        cursor.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier("reference", table)))
        return cursor.fetchone()[0]


TEXT_COLUMNS_SQL = """
SELECT attname, atttypid IN ('text'::regtype, 'varchar'::regtype, 'bpchar'::regtype)
FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum"""


def table_columns(export: Export) -> list[tuple[str, bool]]:
    """The export table's columns in order, each with whether it holds text."""
    return [(name, bool(is_text)) for name, is_text in
            data_db.execute_sql(TEXT_COLUMNS_SQL, [f"reference.{export.table}"]).fetchall()]


def copy_sql(export: Export, columns: list[tuple[str, bool]]) -> str:
    """COPY of the table with every text column neutralised against spreadsheet formulas
    (handled/formula_cells.py), but the export's ``code_columns``; numbers and the column
    names are written as they are."""
    order = f" ORDER BY {', '.join(export.key)}" if export.key else ""
    checked = [name for name, is_text in columns if is_text and name not in export.code_columns]
    select = ", ".join(neutralised_sql(name) if name in checked else '"' + name.replace('"', '""') + '"'
                       for name, _ in columns) if checked else "*"
    return f"COPY (SELECT {select} FROM reference.{export.table}{order}) TO STDOUT WITH (FORMAT csv, HEADER)"


def copy_csv_to(export: Export, fileobj) -> int:
    """COPY the export's table as CSV into ``fileobj`` (anything with write(bytes)); return rows."""
    with quiet_queries(), data_db.atomic():
        require_tables(export)
        # big tables stream in physical order: keep it the same for every download of one build
        data_db.execute_sql("SET LOCAL synchronize_seqscans = off")
        statement = copy_sql(export, table_columns(export))
        cursor = data_db.cursor()
        cursor.copy_expert(statement, fileobj, size=CHUNK_BYTES)
        return cursor.rowcount


class _Cancelled(Exception):
    pass


@dataclass(frozen=True)
class _Finished:
    """The queue's last item: the COPY ended after ``rows`` rows."""

    rows: int


class _QueueSink:
    """A file-like ``write`` that batches COPY's rows into chunks on a bounded queue."""

    def __init__(self, chunks: queue.Queue, cancelled: threading.Event):
        self.chunks, self.cancelled, self.buffer = chunks, cancelled, bytearray()

    def write(self, data) -> None:
        self.buffer += data
        if len(self.buffer) >= CHUNK_BYTES:
            self.flush()

    def flush(self) -> None:
        if self.buffer:
            self.put(bytes(self.buffer))
            self.buffer.clear()

    def put(self, item) -> None:
        """Hand the reader one item (a chunk, the end or the COPY's error); wait while the queue is full.

        Raises ``_Cancelled`` once the reader has gone away (the download was closed).
        """
        while True:
            if self.cancelled.is_set():
                raise _Cancelled()
            try:
                self.chunks.put(item, timeout=0.5)
                return
            except queue.Full:
                continue


def stream_csv(export: Export, progress: Progress) -> Iterator[bytes]:
    """Yield the CSV in chunks while a thread runs the COPY; the rows go to ``progress`` at the end.

    The report is made from the caller's thread, never from the COPY's.
    """
    chunks: queue.Queue = queue.Queue(maxsize=QUEUE_CHUNKS)
    cancelled = threading.Event()
    sink = _QueueSink(chunks, cancelled)

    def produce():
        try:
            rows = copy_csv_to(export, sink)
            sink.flush()
            sink.put(_Finished(rows))
        except _Cancelled:
            _discard_connection()
        except BaseException as exc:
            _discard_connection()
            try:
                sink.put(exc)
            except _Cancelled:
                pass
        finally:
            release_connections()

    thread = threading.Thread(target=produce, name=f"export-{export.id}", daemon=True)
    thread.start()
    try:
        while True:
            item = chunks.get()
            if isinstance(item, _Finished):
                report_rows(progress, export, item.rows)
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        cancelled.set()          # the client went away: stop the COPY
        thread.join(timeout=30)


def _discard_connection() -> None:
    """A COPY interrupted half-way leaves its connection unusable: close it so the pool drops it."""
    try:
        data_db.connection().close()
    except Exception:
        pass


def zip3_json(export: Export) -> tuple[bytes, int]:
    with quiet_queries(), data_db.atomic():
        require_tables(export)
        text, count = data_db.execute_sql(_sql("zip3_reference_json.sql")).fetchone()
    return text.encode(), count


def zone_matrix_json(export: Export) -> tuple[bytes, int]:
    """{"origins": [...], "destinations": [...], "matrix": [[days...]]}, 99 where no service.

    From reference.ground_days when it was built with the live matrix, else from the matrix."""
    with quiet_queries(), data_db.atomic():   # one transaction: a swap waits until both reads are done
        require_tables(export)
        if ground_days_current(export):
            destinations, rows = zone_matrix_from_ground_days(export)
        else:
            log.warning("%s: reference.ground_days was not built with the live delivery_matrix; "
                        "aggregating the matrix (the next delivery-matrix build fixes this)", export.id)
            destinations, rows = zone_matrix_from_matrix(export)
    return zone_matrix_body(destinations, rows)


def ground_days_current(export: Export) -> bool:
    """Whether reference.ground_days holds the export's services and was swapped in with the live matrix."""
    if not set(export.services) <= set(GROUND_SERVICES):
        return False
    matrix = get_transformation("delivery-matrix")
    statement = current_together(matrix, next(c for c in matrix.companions if c.target == "ground_days"))
    return bool(data_db.execute_sql(statement.sql, statement.params).fetchone()[0])


def zone_matrix_from_ground_days(export: Export) -> tuple[list[str], list[tuple[str, str]]]:
    """The destinations and (origin, days text) rows, from ~810,000 pre-aggregated rows."""
    days = "least(" + ", ".join(ground_column(*service) for service in export.services) + ")"
    bits = {"bits": sum(ground_bit(*service) for service in export.services)}
    data_db.execute_sql("SET LOCAL work_mem = '64MB'")   # should the plan ever sort the rows, in memory
    destinations = [r[0] for r in data_db.execute_sql(_sql("zone_matrix_ground_destinations.sql"), bits).fetchall()]
    rows = data_db.execute_sql(_sql("zone_matrix_ground_rows.sql").format(days=days), bits).fetchall()
    return destinations, rows


def zone_matrix_from_matrix(export: Export) -> tuple[list[str], list[tuple[str, str]]]:
    """The same as zone_matrix_from_ground_days, aggregated from the 11M-row matrix (seconds)."""
    placeholders = ", ".join("(%s, %s)" for _ in export.services)
    params = [value for pair in export.services for value in pair]
    data_db.execute_sql(_sql("zone_matrix_best.sql").format(services=placeholders), params)
    destinations = [r[0] for r in data_db.execute_sql(
        'SELECT dest_zip3 FROM _zone_best GROUP BY dest_zip3 ORDER BY dest_zip3 COLLATE "C"').fetchall()]
    rows = data_db.execute_sql(_sql("zone_matrix_rows.sql")).fetchall()
    return destinations, rows


def zone_matrix_body(destinations: list[str], rows: list[tuple[str, str]]) -> tuple[bytes, int]:
    """The JSON text of a zone matrix and its cell count."""
    origins = ",".join(f'"{origin}"' for origin, _ in rows)
    dests = ",".join(f'"{dest}"' for dest in destinations)
    matrix = ",".join(f"[{days}]" for _, days in rows)
    body = f'{{"origins":[{origins}],"destinations":[{dests}],"matrix":[{matrix}]}}'
    return body.encode(), len(rows) * len(destinations)


JSON_BUILDERS = {"zip3-json": zip3_json, "zone-matrix": zone_matrix_json}
