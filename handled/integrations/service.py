"""Import service: one file (or a .zip of files) through checks, loader, archive, history.

The CLI, the pages and background jobs all call ``import_file`` /
``import_paths`` with a ``Context``: its settings (limits, archive folder), its
actor (whom the run history records) and its progress sink (rows read while a
file loads, then one report per finished file with its outcome). They return
plain ``ImportOutcome`` values and never raise for a bad file (the outcome and
the run history say why), not even for a broken or oversized .zip (one failed
run under the archive's name). ``UnknownIntegration`` is raised for an id no
integration has.
"""

from __future__ import annotations

import logging
import tempfile
import zipfile
import zlib
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from psycopg2.errors import QueryCanceled

from handled import audit, heartbeat
from handled.context import Context
from handled.db import data_db
from handled.errors import HandledError
from handled.integrations import history
from handled.integrations.archive import archive_file
from handled.integrations.base import FileRefused, Integration
from handled.integrations.limits import FileLimits, check_archive
from handled.integrations.loader import LoadFailed, Rejections, RowsRead, load_records
from handled.integrations.registry import UnknownIntegration, get_integration
from handled.integrations.sources import file_sha256, inspect_file, open_records
from handled.jobs.progress import JobCancelled, cancel_from_hooks, on_cancel
from handled.settings import Settings

log = logging.getLogger("handled.integrations")
ZIP_SKIPPED_PREFIXES = ("__MACOSX/",)


@dataclass(frozen=True)
class ImportOutcome:
    run_id: int
    integration: str
    file_name: str
    status: str  # succeeded | failed | skipped
    rows_read: int
    rows_written: int
    rows_rejected: int
    message: str

    @property
    def outcome(self) -> str:
        """What became of the file, in words: imported, imported with rejected rows,
        skipped as a duplicate, rejected (bad rows, nothing written) or failed."""
        if self.status == "succeeded":
            return "imported with rejected rows" if self.rows_rejected else "imported"
        if self.status == "skipped":
            return "skipped as a duplicate"
        return "rejected" if self.rows_rejected else "failed"

    def as_dict(self) -> dict:
        """Plain values (a job's record, a page)."""
        return {"run_id": self.run_id, "integration": self.integration, "file_name": self.file_name,
                "status": self.status, "outcome": self.outcome, "rows_read": self.rows_read,
                "rows_written": self.rows_written, "rows_rejected": self.rows_rejected, "message": self.message}

    @property
    def clean(self) -> bool:
        """True when nothing was refused or rejected (skipped counts as clean)."""
        return self.status in ("succeeded", "skipped") and self.rows_rejected == 0


def import_file(ctx: Context, integration_id: str | Integration, path: str | Path, *,
                file_name: str | None = None, partial: bool = False, force: bool = False) -> ImportOutcome:
    """Import one file as ``ctx.actor``; the returned outcome (and the run history) says what happened.

    ``integration_id`` may also be an Integration object (the benchmark's twins).
    ``ctx.progress`` hears "importing" (bytes read of the file, or rows read of a
    spreadsheet) while the file loads, then "imported" (1 of 1) with the file's outcome.
    """
    integration = (integration_id if isinstance(integration_id, Integration)
                   else get_integration(integration_id))
    outcome = _import_one(ctx, integration, Path(path), file_name or Path(path).name, partial, force)
    audit.record(ctx, "integration.import", "integration", integration.id, integration.id,
                 {"file": outcome.file_name, "run_id": outcome.run_id, "status": outcome.status,
                  "rows_written": outcome.rows_written, "rows_rejected": outcome.rows_rejected})
    ctx.progress("imported", 1, 1, f"{outcome.file_name}: {outcome.status}. {outcome.message}")   # the file is done
    return outcome


def _import_one(ctx: Context, integration: Integration, path: Path, name: str, partial: bool,
                force: bool) -> ImportOutcome:
    settings = ctx.settings
    try:
        context = integration.match_name(name)
        facts = inspect_file(path, name, integration, settings.import_max_bytes, FileLimits.from_settings(settings))
    except FileRefused as refusal:
        return _refused_early(ctx, integration, path, name, partial, str(refusal))
    if not force:
        earlier = history.succeeded_before(integration.id, facts.sha256)
        if earlier is not None:
            message = (f"Skipped: the same file (sha256 {facts.sha256[:12]}…) was already imported "
                       f"successfully in run {earlier.id}; use --force to import it again.")
            run = history.start_run(integration.id, name, facts.sha256, facts.size, partial, ctx.actor,
                                    status="skipped")
            history.finish_run(run, "skipped", message)
            return _outcome(run)
    run = history.start_run(integration.id, name, facts.sha256, facts.size, partial, ctx.actor)
    return _load(ctx, integration, run, path, name, facts, context, partial)


def _load(ctx: Context, integration: Integration, run, path: Path, name: str, facts, context: dict,
          partial: bool) -> ImportOutcome:
    settings = ctx.settings
    rejections = Rejections(keep=settings.import_rejected_rows_kept)
    archive = lambda: archive_file(path, facts.sha256, settings.import_archive_dir)  # noqa: E731
    try:
        with ExitStack() as stack:
            stack.enter_context(heartbeat.Heartbeat())  # lets a sweep tell this process is alive
            # a cancelled job whose statement waits on a lock: cancel the statement (its job then ends)
            stack.enter_context(on_cancel(data_db.connection().cancel))
            # Opening reads the header and the first data row: a wrong file is
            # refused here, before the transaction starts. The loader's first
            # pass reuses this opening (a spreadsheet is parsed once).
            opened = [stack.enter_context(open_records(path, name, integration, facts.kind))]
            rows_read = RowsRead(ctx.progress, name, facts.size)
            rows_read.start()

            @contextmanager
            def open_source():
                if opened:
                    records = opened.pop()
                    rows_read.position = getattr(records, "position", None)
                    yield records
                    return
                with open_records(path, name, integration, facts.kind) as records:
                    rows_read.position = getattr(records, "position", None)
                    yield records

            try:
                result = load_records(integration, open_source, context, partial=partial,
                                      rejections=rejections, before_commit=archive, rows_read=rows_read)
            except Exception as exc:
                # the job's cancel stopped the statement (psycopg2's error, or peewee's wrapping it):
                # a cancel, not a bug
                stopped = isinstance(exc, QueryCanceled) or isinstance(exc.__context__, QueryCanceled)
                cancel = cancel_from_hooks() if stopped else None
                if cancel is None:
                    raise
                raise cancel from None
    except FileRefused as refusal:
        history.finish_run(run, "failed", f"Refused: {refusal} Nothing was written.",
                           rows_rejected=rejections.total, rejected_rows=rejections.sorted_rows())
        return _outcome(run)
    except LoadFailed as problem:
        history.finish_run(run, "failed", f"{problem} Nothing was written.",
                           rows_rejected=rejections.total, rejected_rows=rejections.sorted_rows())
        return _outcome(run)
    except JobCancelled as cancel:
        history.finish_run(run, "failed", f"Cancelled by {cancel.by or 'someone'} while it was being "
                           "imported; its transaction was rolled back and nothing was written.",
                           rows_rejected=rejections.total, rejected_rows=rejections.sorted_rows())
        raise
    except BaseException:
        log.exception("import run %s of %s failed unexpectedly", run.id, name)
        history.finish_run(run, "failed", "The import stopped on an unexpected error; it has been "
                           "logged and nothing was written.", rows_rejected=rejections.total,
                           rejected_rows=rejections.sorted_rows())
        raise
    status = "succeeded" if result.committed else "failed"
    history.finish_run(run, status, result.message, rows_read=result.rows_read,
                       rows_written=result.rows_written, rows_rejected=rejections.total,
                       rejected_rows=rejections.sorted_rows())
    return _outcome(run)


def _refused_early(ctx: Context, integration: Integration, path: Path, name: str, partial: bool,
                   message: str) -> ImportOutcome:
    """Record a whole-file refusal (nothing was written)."""
    size = path.stat().st_size
    sha = file_sha256(path)[0] if size <= ctx.settings.import_max_bytes else ""
    run = history.start_run(integration.id, name, sha, size, partial, ctx.actor, status="failed")
    history.finish_run(run, "failed", f"Refused: {message} Nothing was written.")
    return _outcome(run)


def _outcome(run) -> ImportOutcome:
    return ImportOutcome(run_id=run.id, integration=run.integration, file_name=run.file_name,
                         status=run.status, rows_read=run.rows_read, rows_written=run.rows_written,
                         rows_rejected=run.rows_rejected, message=run.message or "")


# ---- many files, and .zip archives of them


@dataclass(frozen=True)
class SourceFile:
    path: Path
    name: str  # the name the file is judged by (a .zip member's own name)


def import_paths(ctx: Context, integration_id: str, paths: Iterable[str | Path], *, partial: bool = False,
                 force: bool = False, names: Iterable[str] | None = None) -> list[ImportOutcome]:
    """Import each file in turn; a .zip contributes each of its files.

    ``names`` optionally gives the original names of ``paths`` (uploads are
    saved under temporary names). Each file is its own transaction and run,
    and ``ctx.progress`` hears its outcome as soon as it is known. A .zip that
    cannot be opened or is over the archive limits is one failed run under its
    own name, before any of its files is extracted.
    """
    integration = get_integration(integration_id)  # fail fast on an unknown id
    names = list(names) if names is not None else None
    outcomes = []
    for index, path in enumerate(paths):
        path = Path(path)
        name = names[index] if names else path.name
        try:
            for source in _expand(path, name, ctx.settings):
                outcomes.append(import_file(ctx, integration, source.path, file_name=source.name,
                                            partial=partial, force=force))
        except FileRefused as refusal:
            outcome = _refused_early(ctx, integration, path, name, partial, str(refusal))
            ctx.progress("imported", 0, None, f"{name}: {outcome.status}. {outcome.message}")
            outcomes.append(outcome)
    return outcomes


def _expand(path: Path, name: str, settings: Settings):
    """The file itself, or each member of a .zip extracted to a temporary file.

    The archive is judged whole (limits.check_archive, each member's declared
    size) before its first member is extracted; FileRefused says why not.
    """
    if not name.lower().endswith(".zip"):
        yield SourceFile(path, name)
        return
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError):
        raise FileRefused(f"{name} is not a valid .zip archive.") from None
    with archive, tempfile.TemporaryDirectory(prefix="handled-import-") as folder:
        check_archive(archive, name, max_files=settings.import_zip_max_files,
                      max_bytes=settings.import_zip_max_bytes)
        members = count_files(archive)
        for member in members:
            if member.file_size > settings.import_max_bytes:
                raise FileRefused(
                    f"{member.filename} in {name} is {member.file_size:,} bytes, over the import "
                    f"limit of {settings.import_max_bytes:,} bytes (IMPORT_MAX_BYTES); nothing in it was imported.")
        for member in members:
            target = Path(folder) / "member"
            try:
                with archive.open(member) as source, open(target, "wb") as out:
                    _copy_limited(source, out, member.file_size, member.filename)
            except (zipfile.BadZipFile, EOFError, zlib.error, NotImplementedError, RuntimeError) as exc:
                raise FileRefused(f"{member.filename} in {name} could not be extracted ({exc}); the files "
                                  "before it were imported, it and the ones after it were not.") from None
            yield SourceFile(target, Path(member.filename).name)


def count_files(archive: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    """The regular files of a .zip, in name order (folders and Mac metadata left out)."""
    members = [m for m in archive.infolist()
               if not m.is_dir() and not m.filename.startswith(ZIP_SKIPPED_PREFIXES)
               and not Path(m.filename).name.startswith("._")]
    return sorted(members, key=lambda m: m.filename)


def _copy_limited(source, out, limit: int, name: str) -> None:
    """Copy at most the member's declared size (zipfile enforces it too: never trust one check alone)."""
    copied = 0
    while chunk := source.read(1 << 20):
        copied += len(chunk)
        if copied > limit:
            raise zipfile.BadZipFile(f"{name} expands beyond its declared {limit:,} bytes")
        out.write(chunk)


class ImportRequestError(HandledError):
    """An import request that cannot run at all; the message says why."""


__all__ = ["ImportOutcome", "ImportRequestError", "UnknownIntegration", "import_file",
           "import_paths", "rebuild_from_archive"]


# ---- rebuilding a workspace table from the archive


def runs_to_rebuild(integration: Integration) -> list:
    """The succeeded runs whose files rebuild the table: the latest one for
    replace mode; otherwise each content's last import, in import order."""
    runs = [r for r in reversed(history.recent_runs(integration.id, limit=1_000_000))
            if r.status == "succeeded"]
    if integration.mode == "replace":
        return runs[-1:]
    last_by_sha = {run.file_sha256: run for run in runs}
    return sorted(last_by_sha.values(), key=lambda run: run.id)


def rebuild_from_archive(ctx: Context, integration_id: str) -> list[ImportOutcome]:
    """Re-import the archived files of the runs that built the table (see docs/IMPORTS.md)."""
    from handled.integrations.archive import archived_path

    integration = get_integration(integration_id)
    folder = ctx.settings.import_archive_dir
    plan = runs_to_rebuild(integration)
    missing = [r for r in plan if not archived_path(folder, r.file_sha256).is_file()]
    if missing:
        raise ImportRequestError(f"The archive has no copy of {missing[0].file_name} (run {missing[0].id}, "
                                 f"sha256 {missing[0].file_sha256[:12]}…) in {folder}.")
    return [import_file(ctx, integration, archived_path(folder, run.file_sha256), file_name=run.file_name,
                        partial=run.partial, force=True)
            for run in plan]
