"""The streaming loader: records → COPY → one set-based statement per mode.

Everything happens in one DATA transaction, so a file lands fully or not at
all. Converted rows stream into ``COPY ... FROM STDIN`` through a file-like
object that pulls them one chunk at a time; nothing holds the whole file.

The staged path copies into a temporary table whose rows keep their file line
number, rejects duplicate keys set-based (naming both lines), then applies one
statement: INSERT, INSERT ... ON CONFLICT DO UPDATE, or TRUNCATE + INSERT.
Because INSERT ... SELECT costs about twice what COPY does, a file that can
land as a plain insert (replace and insert modes, or an upsert whose file
scope - e.g. its origin ZIP - has no rows yet) is first copied straight into
the table inside a savepoint; if any row is rejected or a key repeats, the
savepoint is undone and the staged path reads the file again to report every
problem. Partial imports always take the staged path.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from typing import Callable, ContextManager, Iterable, Iterator

import psycopg2
from psycopg2 import sql

from handled.context import NO_PROGRESS, Progress
from handled.db import data_db
from handled.errors import HandledError
from handled.integrations.base import FileRefused, Integration, Record, RowError
from handled.wording import how_many

log = logging.getLogger("handled.integrations")
OpenSource = Callable[[], ContextManager[Iterator[Record]]]

COPY_CHUNK = 256 * 1024
REPORT_EVERY = 2048  # records between looks at the progress
REPORT_SECONDS = 0.25  # at most this often a report
VALUE_LIMIT = 200  # characters of a rejected value kept in the history
_NEEDS_ESCAPE = re.compile(r"[\\\t\n\r]")
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


@dataclass
class Rejections:
    """Every rejected row is counted; the first ``keep`` are kept with their reasons."""

    keep: int
    total: int = 0
    rows: list = field(default_factory=list)

    def add(self, line: int, column: str, value: str, reason: str) -> None:
        self.total += 1
        if len(self.rows) < self.keep:
            self.rows.append({"line": line, "column": column,
                              "value": value[:VALUE_LIMIT], "reason": reason})

    def add_error(self, line: int, error: RowError) -> None:
        self.add(line, error.column, error.value, error.reason)

    def sorted_rows(self) -> list:
        return sorted(self.rows, key=lambda r: r["line"])[: self.keep]


@dataclass
class LoadResult:
    rows_read: int
    rows_written: int
    committed: bool
    message: str


class LoadFailed(HandledError):
    """The database refused the rows for a reason validation did not foresee."""


class _RollBack(Exception):
    """Raised inside the transaction to undo it; carries the user's sentence."""


class CopyStream:
    """A minimal read()-able file over an iterator of COPY text lines."""

    def __init__(self, lines: Iterator[str]):
        self._lines = lines
        self.error: BaseException | None = None  # psycopg2 hides it inside its own error

    def read(self, size: int = COPY_CHUNK) -> str:
        parts, length = [], 0
        try:
            for line in self._lines:
                parts.append(line)
                length += len(line)
                if length >= size:
                    break
        except BaseException as exc:
            self.error = exc
            raise
        return "".join(parts)

    readline = read


class _StopDirect(Exception):
    """A record was rejected while copying straight into the table."""


class RowsRead:
    """Records read so far from one file; ``ctx.progress`` hears how far the file has been read.

    Counting by records keeps the hot loop to one modulo: every REPORT_EVERY
    records ``report`` looks at the bytes read (``position``, set by the caller
    for text files) and tells the sink when the percentage grew, at most every
    REPORT_SECONDS. Without a position (spreadsheets) it reports rows only.
    The percentage never goes back: a second pass over the file (to name every
    rejected row) reports only once it gets past the first one.
    """

    def __init__(self, progress: Progress = NO_PROGRESS, file_name: str = "", size: int | None = None):
        self.count = 0
        self.progress = progress
        self.file_name = file_name
        self.size = size
        self.position: Callable[[], int] | None = None
        self._best = 0
        self._last = 0.0

    def start(self) -> None:
        """Say that the file is being read (0 bytes so far)."""
        self.progress("importing", 0, self.size or None, f"{self.file_name}: reading")

    def report(self, count: int) -> None:
        now = time.monotonic()
        if now - self._last < REPORT_SECONDS:
            return
        if self.position is not None and self.size:
            try:
                done = min(self.size, self.position())
            except (OSError, ValueError):     # the file was closed under us: nothing to say
                return
            if done * 100 // self.size <= self._best * 100 // self.size:
                return
            self._best, self._last = done, now
            self.progress("importing", done, self.size,
                          f"{self.file_name}: {count:,} rows read ({done:,} of {self.size:,} bytes)")
            return
        self._last = now
        self.progress("importing", count, None, f"{self.file_name}: {count:,} rows read")


def copy_lines(records: Iterable[Record], integration: Integration, context: dict,
               on_reject: Callable[[int, RowError], None], rows_read: RowsRead,
               with_line: bool) -> Iterator[str]:
    """COPY text lines of converted records (``line_no<TAB>`` first when staging).

    Records matching the integration's fast pattern go out as they are; the
    rest go through its converter, and only free-text columns are escaped.
    ``rows_read`` counts the records read (and reports progress).
    """
    fast = integration.fast_pattern(context) if integration.fast_pattern else None
    match = fast.fullmatch if fast is not None else None
    whole = fast is None or fast.groups == 0
    convert = integration.convert
    escape = _escaper(integration)
    read, report = 0, rows_read.report
    try:
        for line, cells in records:
            read += 1
            if not read % REPORT_EVERY:
                report(read)
            if match is not None:
                joined = "\t".join(cells)
                found = match(joined)
                if found is not None:
                    text = joined if whole else found.group(1)
                    yield f"{line}\t{text}\n" if with_line else text + "\n"
                    continue
            try:
                for row in convert(cells, context):
                    text = "\t".join(escape(row))
                    yield f"{line}\t{text}\n" if with_line else text + "\n"
            except RowError as error:
                on_reject(line, error)
    finally:
        rows_read.count = read


def _escaper(integration: Integration) -> Callable[[tuple], tuple]:
    indexes = [integration.columns.index(c) for c in integration.free_text]
    if not indexes:
        return lambda row: row
    needs_escape = _NEEDS_ESCAPE.search

    def escape(row):
        if not any(needs_escape(row[i]) for i in indexes):
            return row
        row = list(row)
        for i in indexes:
            row[i] = row[i].translate(_ESCAPES)
        return row
    return escape


def load_records(integration: Integration, open_source: OpenSource, context: dict, *,
                 partial: bool, rejections: Rejections,
                 before_commit: Callable[[object, int], None] | None = None,
                 rows_read: RowsRead | None = None) -> LoadResult:
    """Load a file's records into the integration's table in one transaction.

    ``open_source()`` opens the records afresh (a context manager); a file is
    read twice only when a fast direct copy meets a bad row and the staged
    path runs to report every one. Without ``partial`` any rejected row undoes
    everything; with it the good rows land and the bad ones are only recorded.
    FileRefused raised while reading (broken quoting deep in the file) undoes
    everything too. ``rows_read`` counts the records and reports progress.
    ``before_commit(cursor, rows_written)`` runs last inside the transaction, only when it
    is about to commit (the service archives the file and writes the run's ledger row).
    """
    rows_read = rows_read if rows_read is not None else RowsRead()
    try:
        with data_db.atomic():
            with data_db.connection().cursor() as cur:
                written = None
                if not partial and _can_copy_directly(cur, integration, context):
                    written = _copy_directly(cur, integration, open_source, context, rows_read)
                if written is None:
                    written = _load_staged(cur, integration, open_source, context, partial,
                                           rejections, rows_read)
                if before_commit is not None:   # last, inside the transaction: (cursor, rows written)
                    before_commit(cur, written)
    except _RollBack as stop:
        return LoadResult(rows_read.count, 0, False, str(stop))
    except psycopg2.Error as exc:
        log.warning("import of %s failed in the database: %s", integration.id, exc)
        detail = (exc.diag.message_primary or str(exc)).strip().rstrip(".")
        raise LoadFailed(f"The DATA database refused the rows: {detail}.") from None
    return LoadResult(rows_read.count, written, True, _summary(written, rejections))


def _copy(cur, statement: sql.Composable, lines: Iterator[str]) -> int:
    """Stream ``lines`` into COPY; an error raised while reading surfaces as itself."""
    stream = CopyStream(lines)
    try:
        cur.copy_expert(statement.as_string(cur), stream, size=COPY_CHUNK)
    except psycopg2.Error:
        if stream.error is not None:  # e.g. FileRefused from the reader
            raise stream.error from None
        raise
    return cur.rowcount


def _can_copy_directly(cur, integration: Integration, context: dict) -> bool:
    """Replace and insert always; upsert only when no row of the file's scope exists yet."""
    if integration.mode != "upsert":
        return True
    if not integration.scope:
        return False
    where = sql.SQL(" AND ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c, _ in integration.scope)
    cur.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {} WHERE {})").format(_table(integration), where),
                [context[key] for _, key in integration.scope])
    return not cur.fetchone()[0]


def _copy_directly(cur, integration: Integration, open_source: OpenSource, context: dict,
                   rows_read: RowsRead) -> int | None:
    """The fast path: COPY straight into the table inside a savepoint. None when a
    row is rejected or a key repeats: the caller then stages the file to report them."""
    def stop(line, error):
        raise _StopDirect()

    statement = sql.SQL("COPY {} ({}) FROM STDIN WITH (NULL '')").format(
        _table(integration), _idents(integration.columns))
    try:
        with data_db.atomic():
            if integration.mode == "replace":
                cur.execute(sql.SQL("TRUNCATE {}").format(_table(integration)))
            with open_source() as records:
                return _copy(cur, statement, copy_lines(records, integration, context, stop,
                                                       rows_read, with_line=False))
    except (_StopDirect, psycopg2.errors.UniqueViolation):
        return None


def _load_staged(cur, integration: Integration, open_source: OpenSource, context: dict,
                 partial: bool, rejections: Rejections, rows_read: RowsRead) -> int:
    """COPY into a staging table with line numbers, reject set-based, then apply."""
    _create_staging(cur, integration)
    statement = sql.SQL("COPY import_staging (line_no, {}) FROM STDIN WITH (NULL '')").format(
        _idents(integration.columns))
    with open_source() as records:
        _copy(cur, statement, copy_lines(records, integration, context, rejections.add_error,
                                         rows_read, with_line=True))
    return _reject_and_apply(cur, integration, partial, rejections, rows_read.count)


def _summary(written: int, rejections: Rejections) -> str:
    text = f"{how_many(written, 'row')} written to the table."
    if rejections.total:
        were = "was" if rejections.total == 1 else "were"
        text += (f" {how_many(rejections.total, 'row')} {were} rejected and not loaded"
                 " (partial import: the good rows were kept).")
    return text


def _reject_and_apply(cur, integration: Integration, partial: bool, rejections: Rejections,
                      rows_read: int) -> int:
    if partial:
        _record_conflicts(cur, integration, rejections, remove=True)
        cur.execute("SELECT EXISTS (SELECT 1 FROM import_staging)")
        if not cur.fetchone()[0]:  # a replace with no good row would empty the table
            raise _RollBack(f"Nothing was written: {rejections.total:,} rows were rejected and the "
                            f"file ({rows_read:,} rows read) has no good row to load.")
        return _apply(cur, integration)
    if rejections.total:
        _record_conflicts(cur, integration, rejections, remove=False)
        raise _RollBack(_refusal(rejections, rows_read))
    try:
        with data_db.atomic():  # a savepoint: duplicates are looked for only if the apply fails
            return _apply(cur, integration)
    except (psycopg2.errors.UniqueViolation, psycopg2.errors.CardinalityViolation):
        _record_conflicts(cur, integration, rejections, remove=False)
        if not rejections.total:
            raise
        raise _RollBack(_refusal(rejections, rows_read)) from None


def _refusal(rejections: Rejections, rows_read: int) -> str:
    first = rejections.sorted_rows()[0]
    return (f"Nothing was written: {rejections.total:,} of {rows_read:,} rows were rejected "
            f"(first on line {first['line']}{', ' + first['column'] if first['column'] else ''}: "
            f"{first['reason']}).")


def _idents(names: Iterable[str]) -> sql.Composable:
    return sql.SQL(", ").join(sql.Identifier(n) for n in names)


def _table(integration: Integration) -> sql.Composable:
    return sql.Identifier("workspace", integration.target)


def _create_staging(cur, integration: Integration) -> None:
    cur.execute("DROP TABLE IF EXISTS pg_temp.import_staging")
    cur.execute(sql.SQL("CREATE TEMP TABLE import_staging (LIKE {}) ON COMMIT DROP").format(
        _table(integration)))
    cur.execute("ALTER TABLE import_staging ADD COLUMN line_no integer NOT NULL")


def _apply(cur, integration: Integration) -> int:
    """One statement per mode; returns the rows inserted or updated."""
    table, columns = _table(integration), _idents(integration.columns)
    if integration.mode == "replace":
        cur.execute(sql.SQL("TRUNCATE {}").format(table))
    statement = sql.SQL("INSERT INTO {} ({}) SELECT {} FROM import_staging").format(
        table, columns, columns)
    if integration.mode == "upsert":
        others = [c for c in integration.columns if c not in integration.key]
        updates = sql.SQL(", ").join(
            sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in others)
        action = sql.SQL("DO UPDATE SET {}").format(updates) if others else sql.SQL("DO NOTHING")
        statement = sql.SQL("{} ON CONFLICT ({}) {}").format(
            statement, _idents(integration.key), action)
    cur.execute(statement)
    return cur.rowcount


def _record_conflicts(cur, integration: Integration, rejections: Rejections, remove: bool) -> None:
    """Reject rows sharing a key with another row of the file (naming the other
    lines) and, in insert mode, rows whose key is already in the table."""
    key = _idents(integration.key)
    staged_key = sql.SQL(", ").join(sql.SQL("s.{}").format(sql.Identifier(k)) for k in integration.key)
    cur.execute("DROP TABLE IF EXISTS pg_temp.import_conflicts")
    query = sql.SQL(
        "CREATE TEMP TABLE import_conflicts ON COMMIT DROP AS "
        "SELECT s.line_no, {staged_key}, d.lines FROM import_staging s JOIN ("
        " SELECT {key}, array_agg(line_no ORDER BY line_no) AS lines FROM import_staging"
        " GROUP BY {key} HAVING count(*) > 1) d USING ({key})").format(staged_key=staged_key, key=key)
    if integration.mode == "insert":
        query = sql.SQL("{} UNION ALL SELECT s.line_no, {}, NULL FROM import_staging s "
                        "JOIN {} t USING ({})").format(query, staged_key, _table(integration), key)
    cur.execute(query)
    cur.execute(sql.SQL("SELECT line_no, {}, lines FROM import_conflicts ORDER BY line_no LIMIT %s")
                .format(key), (rejections.keep,))
    found = cur.fetchall()
    cur.execute("SELECT count(*) FROM import_conflicts")
    total = cur.fetchone()[0]
    for line, *values, lines in found:
        rejections.add(line, ", ".join(integration.key), ", ".join(values),
                       _conflict_reason(integration, line, lines))
    rejections.total += total - len(found)
    if remove and total:
        match = sql.SQL(" AND ").join(
            sql.SQL("s.{0} = c.{0}").format(sql.Identifier(k)) for k in ("line_no", *integration.key))
        cur.execute(sql.SQL("DELETE FROM import_staging s USING import_conflicts c WHERE {}")
                    .format(match))


def _conflict_reason(integration: Integration, line: int, lines: list | None) -> str:
    key = ", ".join(integration.key)
    if lines is None:
        return f"duplicate key: this {key} is already in {integration.table} (insert mode)"
    others = ", ".join(str(n) for n in lines if n != line) or str(line)
    return f"duplicate key: the same {key} is also on line {others}"


__all__ = ["COPY_CHUNK", "CopyStream", "FileRefused", "LoadFailed", "LoadResult", "Rejections",
           "RowsRead", "copy_lines", "load_records"]
