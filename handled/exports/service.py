"""Exports for the CLI and the web: versions (ETag), run history, cached JSON, streams.

An export's version is the last successful run of each transformation it comes
from (PRIMARY); the bytes come from DATA (builders.py). Unchanged exports are
answered with 304 on the web, and the small JSON files are kept in Redis per
version, so they are not rebuilt until a transformation runs again.

Writing and streaming take a ``Context``: its actor is recorded on the export
run, and its progress sink hears how many rows were written.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Iterator

import redis

from handled import audit, heartbeat, runs
from handled.cache import get_redis
from handled.context import Context, Progress
from handled.db import NOT_ANSWERING, connection_lost
from handled.errors import HandledError, first_line
from handled.exports import builders, streams
from handled.exports.registry import EXPORTS, Export, get_export
from handled.transformations import history

log = logging.getLogger("handled.exports")
JSON_CACHE_KEY = "handled:export:{id}:{etag}"
JSON_CACHE_SECONDS = 24 * 3600


@dataclass(frozen=True)
class ExportVersion:
    etag: str | None
    last_modified: datetime | None


class ExportFailed(HandledError):
    """An export could not be written; the message says why."""


def export_version(export: Export) -> ExportVersion:
    """Which transformation runs the export's bytes come from (no version: not built yet)."""
    if not export.transformations:
        return ExportVersion(None, None)
    successes = [history.last_success(tid) for tid in export.transformations]
    if any(run is None for run in successes):
        return ExportVersion(None, None)
    # a run's id and end: ids come back after PRIMARY is restored or recreated, and a cached file
    # (JSON_CACHE_KEY) of the old run with that id must not answer for the new one
    tag = f"{export.id}:" + ",".join(f"{run.id}@{run.finished_at.isoformat()}" for run in successes)
    return ExportVersion(hashlib.sha1(tag.encode()).hexdigest()[:24],
                         max(run.finished_at for run in successes))


def describe_exports() -> list[dict]:
    """Per export, what the page shows: its version, how its source tables were last built
    (when, how long, how many rows), and the last successful download of that version (how many
    rows, cells or ZIP3s, how many bytes). Counts come from the run history, exact at the time
    they were written; only the two seeded tables are counted (a few rows each) when DATA answers."""
    runs.sweep_dead_runs("export")   # a download whose web worker died reads as failed, not running forever
    rows = []
    for export in EXPORTS.values():
        last = runs.recent_runs("export", export.id, limit=1)
        version = export_version(export)
        builds = [history.last_success(tid) for tid in export.transformations]
        written = runs.last_success("export", export.id)
        if written is not None and version.last_modified and written.finished_at < version.last_modified:
            written = None      # written before the last build: its counts describe an older version
        rows.append({"export": export, "version": version, "last_run": last[0] if last else None,
                     "builds": [b for b in builds if b is not None], "written": written,
                     "seeded_rows": _seeded_rows(export) if not export.transformations else None})
    return rows


def _seeded_rows(export: Export) -> int | None:
    """Rows of a seeded reference table (carriers, services); None while DATA does not answer."""
    if export.table is None:
        return None
    try:
        return builders.count_rows(export.table)
    except NOT_ANSWERING:
        return None


def json_bytes(export: Export, version: ExportVersion) -> tuple[bytes, int]:
    """The JSON file, from the Redis cache when this version was built before."""
    key = JSON_CACHE_KEY.format(id=export.id, etag=version.etag) if version.etag else None
    if key:
        try:
            cached = get_redis().get(key)
        except redis.RedisError:
            cached = None
        if cached is not None:
            count, _, body = cached.partition(b"\n")
            return body, int(count)
    body, count = builders.JSON_BUILDERS[export.kind](export)
    if key:
        try:
            get_redis().set(key, str(count).encode() + b"\n" + body, ex=JSON_CACHE_SECONDS)
        except redis.RedisError as exc:
            log.warning("could not cache %s: %s", export.id, exc)
    return body, count


def stream_export(ctx: Context, export_id: str, *, version: ExportVersion | None = None) -> Iterator[bytes]:
    """The export's bytes in chunks, recorded in config.export_runs as ``ctx.actor`` when the stream ends.

    Takes one of the actor's download slots now (streams.py: EXPORT_STREAMS_PER_USER), so a user
    over the limit hears TooManyDownloads (429) before any response starts; the slot is given back
    when the stream ends or is closed.
    """
    export = get_export(export_id)
    version = version or export_version(export)
    slot = streams.take_slot(ctx.actor, ctx.settings.export_streams_per_user)
    return streams.Holding(_stream(ctx, export, version), slot)


def _stream(ctx: Context, export: Export, version: ExportVersion) -> Iterator[bytes]:
    # the heartbeat says this process still streams the run: a worker killed mid-download leaves
    # its run 'running', and the sweep (runs.py) fails it once the heartbeat is gone
    with heartbeat.Heartbeat():
        run_id = _start_run(ctx, export, "export.download")
        tally, size = _RowTally(ctx.progress), 0
        try:
            for chunk in _chunks(export, version, tally):
                size += len(chunk)
                yield chunk
        except GeneratorExit:
            _record_end(run_id, "failed", "The download was interrupted.", rows_written=tally.rows,
                        bytes_written=size)
            raise
        except Exception as exc:
            if not isinstance(exc, (HandledError, *NOT_ANSWERING)) and not connection_lost(exc):
                raise _bug(export, run_id, exc, rows_written=tally.rows, bytes_written=size) from exc
            # not bugs (a refusal, a database gone even mid-COPY): the edges say why, with the right code
            _record_end(run_id, "failed", first_line(exc), rows_written=tally.rows, bytes_written=size)
            raise
        _record_end(run_id, "succeeded", None, rows_written=tally.rows, bytes_written=size)


def _record_end(run_id: int, status: str, message: str | None, **written) -> None:
    """End a download's run; PRIMARY not answering is one log line (the sweep ends the run later),
    never an error raised past the last chunk of a download that was sent whole."""
    try:
        runs.finish_run("export", run_id, status, message=message, **written)
    except NOT_ANSWERING as exc:
        log.warning("export run %s ended (%s) but PRIMARY did not record it: %s", run_id, status, first_line(exc))


def _chunks(export: Export, version: ExportVersion, progress: Progress) -> Iterator[bytes]:
    if export.kind == "csv":
        return builders.stream_csv(export, progress)
    body, rows = json_bytes(export, version)
    builders.report_rows(progress, export, rows)
    return (body[start:start + builders.CHUNK_BYTES] for start in range(0, len(body), builders.CHUNK_BYTES))


def write_export(ctx: Context, export_id: str, fileobj) -> dict:
    """Write the export to an open binary file (or stdout) as ``ctx.actor``; return rows and bytes written."""
    export = get_export(export_id)
    with heartbeat.Heartbeat():   # a live run, for the sweep (see _stream)
        return _write(ctx, export, fileobj)


def _write(ctx: Context, export: Export, fileobj) -> dict:
    run_id = _start_run(ctx, export, "export.write")
    counter = _CountingWriter(fileobj)
    try:
        if export.kind == "csv":
            # a real file gets COPY's rows directly (C-level writes); size from its position
            seekable = getattr(fileobj, "seekable", lambda: False)()
            start = fileobj.tell() if seekable else 0
            rows = builders.copy_csv_to(export, fileobj if seekable else counter)
            size = (fileobj.tell() - start) if seekable else counter.size
        else:
            body, rows = json_bytes(export, export_version(export))
            fileobj.write(body)
            size = len(body)
        fileobj.flush()
    except Exception as exc:
        if not isinstance(exc, (HandledError, *NOT_ANSWERING)) and not connection_lost(exc):
            raise _bug(export, run_id, exc) from exc
        runs.fail_run("export", run_id, first_line(exc))   # not bugs: the edges say why, with the right code
        raise
    runs.finish_run("export", run_id, "succeeded", rows_written=rows, bytes_written=size)
    builders.report_rows(ctx.progress, export, rows)
    return {"export": export.id, "rows": rows, "bytes": size, "run_id": run_id}


def _start_run(ctx: Context, export: Export, action: str) -> int:
    """The export's run, and its one audit row (``export.download`` on the web, ``export.write``
    from the CLI) naming the run, whose row says how it ended."""
    run_id = runs.start_run("export", actor_id=ctx.actor.id, actor_email=audit.actor_text(ctx.actor),
                            export=export.id).id
    audit.record(ctx, action, "export", export.id, export.id, {"run_id": run_id})
    return run_id


def _bug(export: Export, run_id: int, exc: Exception, **written) -> ExportFailed:
    """An unexpected error (a bug): log its traceback, fail the run, return the sentence to raise.

    The same for streams and files; neither the run nor the user sees the bug's own text.
    """
    log.error("export %s failed unexpectedly", export.id, exc_info=exc)
    sentence = f"Export {export.id} failed unexpectedly; the error was logged."
    runs.fail_run("export", run_id, sentence, **written)
    return ExportFailed(sentence)


class _RowTally:
    """The progress sink of one stream: passes reports on to the context's, keeps the rows for the run."""

    def __init__(self, progress: Progress):
        self.progress, self.rows = progress, 0

    def __call__(self, phase: str, done: int | None = None, total: int | None = None,
                 message: str | None = None) -> None:
        if done is not None:
            self.rows = done
        self.progress(phase, done, total, message)


class _CountingWriter:
    """Counts the bytes written to a file that cannot tell its position (stdout, a pipe)."""

    def __init__(self, raw):
        self.raw, self.size = raw, 0

    def write(self, data):
        self.size += len(data)
        return self.raw.write(data)
