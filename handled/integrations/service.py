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

from psycopg2 import sql
from psycopg2.errors import QueryCanceled

from handled import audit, heartbeat, ledger
from handled.context import Context
from handled.db import connection_lost, data_db, discard_broken_connections
from handled.errors import HandledError, first_line
from handled.integrations import history
from handled.integrations.archive import archive_file
from handled.integrations.base import FileRefused, Integration, RowError, WrongHeader, WrongKind
from handled.integrations.limits import FileLimits, check_archive
from handled.integrations.loader import LoadFailed, Rejections, RowsRead, load_records
from handled.integrations.names import (JudgedName, describe_scope, header_refusal, judge_name, read_by_any,
                                        scope_of, scope_of_name)
from handled.integrations.options import force_hint, partial_hint
from handled.integrations.registry import UnknownIntegration, all_integrations, get_integration
from handled.integrations.sources import file_sha256, inspect_file, open_records
from handled.jobs.progress import JobCancelled, cancel_from_hooks, on_cancel
from handled.settings import Settings

log = logging.getLogger("handled.integrations")
ZIP_SKIPPED_PREFIXES = ("__MACOSX/",)


@dataclass(frozen=True)
class ImportOutcome:
    run_id: int | None  # None for a file of a .zip that was ignored (no run)
    integration: str
    file_name: str
    status: str  # succeeded | failed | skipped | ignored | cancelled
    rows_read: int
    rows_written: int
    rows_rejected: int
    message: str  # the run's message, plus what the reader could do about it in their channel's words

    @property
    def outcome(self) -> str:
        """What became of the file, in words: imported, imported with rejected rows,
        skipped as a duplicate, rejected (bad rows, nothing written), failed, or
        ignored (a file in a .zip that no integration reads)."""
        if self.status == "succeeded":
            return "imported with rejected rows" if self.rows_rejected else "imported"
        if self.status == "skipped":
            return "skipped as a duplicate"
        if self.status == "ignored":
            return "ignored"
        if self.status == "cancelled":
            return "cancelled"
        return "rejected" if self.rows_rejected else "failed"

    def as_dict(self) -> dict:
        """Plain values (a job's record, a page)."""
        return {"run_id": self.run_id, "integration": self.integration, "file_name": self.file_name,
                "status": self.status, "outcome": self.outcome, "rows_read": self.rows_read,
                "rows_written": self.rows_written, "rows_rejected": self.rows_rejected, "message": self.message}

    @property
    def clean(self) -> bool:
        """True when nothing was refused or rejected (skipped and ignored count as clean)."""
        return self.status in ("succeeded", "skipped", "ignored") and self.rows_rejected == 0


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
        judged = judge_name(integration, name)
    except FileRefused as refusal:
        return _refused_early(ctx, integration, path, name, partial, str(refusal))
    try:
        facts = inspect_file(path, name, integration, settings.import_max_bytes, FileLimits.from_settings(settings))
    except FileRefused as refusal:
        # a browser-renamed file whose content cannot even be read proves nothing: its name's sentence
        return _refused_early(ctx, integration, path, name, partial,
                              str(judged.refusal if judged.renamed else refusal))
    same = history.succeeded_with(integration.id, facts.sha256)
    conflict = _other_scope(integration, judged, same)
    if conflict is not None:
        return _refused(ctx, integration, name, facts, partial, conflict)
    if not force and same and _still_in_table(integration, judged, same[0]):
        message = (f"Skipped: the same file (sha256 {facts.sha256[:12]}…) was already imported "
                   f"successfully in run {same[0].id} ({same[0].file_name}), and the table still holds it.")
        run = history.start_run(integration.id, name, facts.sha256, facts.size, partial, ctx.actor,
                                status="skipped")
        history.finish_run(run, "skipped", message)
        return _outcome(run, force_hint(ctx.actor.channel))
    run = history.start_run(integration.id, name, facts.sha256, facts.size, partial, ctx.actor)
    return _load(ctx, integration, run, path, judged, facts, partial)


def _other_scope(integration: Integration, judged: JudgedName, same: list) -> str | None:
    """Why a file whose content succeeded before under another scope's name (the same bytes as
    ``10001.csv`` now called ``10002.csv``) is refused; None when it is not such a file."""
    if not integration.scope or not same:
        return None
    scope = scope_of(integration, judged.context)
    scopes = [(run, scope_of_name(integration, run.file_name)) for run in same]
    if any(other == scope for _, other in scopes):
        return None
    earlier, other = next(((run, other) for run, other in scopes if other is not None), (None, None))
    if earlier is None:
        return None
    return (f"{judged.name} has the same content (sha256 {earlier.file_sha256[:12]}…) as {earlier.file_name}, "
            f"imported for {describe_scope(other)} in run {earlier.id}: its rows are for "
            f"{describe_scope(other)}, not for {describe_scope(scope)} as its name says.")


def _still_in_table(integration: Integration, judged: JudgedName, earlier) -> bool:
    """Does the table still hold what ``earlier`` (the last success of the same content) loaded?

    Replace mode: only if no other content succeeded after it (it replaced the whole
    table) and the table is not empty. Upsert with a scope (an origin): only if no
    other content of the same scope succeeded after it and the scope has rows.
    Otherwise the history cannot tell, and a repeat is taken as a duplicate.
    """
    if integration.mode == "replace":
        later = history.succeeded_after(integration.id, earlier)
        return not any(run.file_sha256 != earlier.file_sha256 for run in later) and _holds_rows(integration, {})
    if integration.mode == "upsert" and integration.scope:
        scope = scope_of(integration, judged.context)
        later = [run for run in history.succeeded_after(integration.id, earlier)
                 if run.file_sha256 != earlier.file_sha256 and scope_of_name(integration, run.file_name) == scope]
        return not later and _holds_rows(integration, scope)
    return True


def _holds_rows(integration: Integration, scope: dict) -> bool:
    """Does the integration's table hold any row (of ``scope``, e.g. one origin)?"""
    columns = {key: column for column, key in integration.scope}
    where = sql.SQL(" AND ").join([sql.SQL("{} = %s").format(sql.Identifier(columns[key])) for key in scope]
                                  or [sql.SQL("true")])
    with data_db.connection().cursor() as cur:
        cur.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {} WHERE {})").format(
            sql.Identifier("workspace", integration.target), where), list(scope.values()))
        return cur.fetchone()[0]


def _first_record_check(integration: Integration, judged: JudgedName):
    """What the first data record must show before anything is written.

    A browser-renamed file of a header-less format is proven by its first record:
    it must be a record of this format (or the file is refused for its name). A
    record whose cells repeat a value of the name (the origin column of a UPS
    ground file) must repeat it: a well-formed record of another origin means the
    file is misnamed, and it is refused as a whole, not rejected row by row.
    """
    context = judged.context

    def converts(cells, context_) -> bool:
        try:
            list(integration.convert(list(cells), context_))
        except RowError:
            return False
        return True

    def check(record) -> None:
        line, cells = record
        own = dict(context, **{key: cells[i] for i, key in integration.name_cells if i < len(cells)})
        if judged.renamed and integration.header is None and not converts(cells, own):
            raise FileRefused(str(judged.refusal))
        differing = {key: cells[i] for i, key in integration.name_cells if i < len(cells) and cells[i] != context[key]}
        if differing and converts(cells, own):
            said = {key: context[key] for key in differing}
            raise FileRefused(f"{judged.name} holds rows for {describe_scope(differing)} (line {line}), "
                              f"not for {describe_scope(said)} as its name says.")
    return check


def _stopped_by_a_cancel(exc: BaseException) -> bool:
    """True when a cancelled statement (QueryCanceled) is anywhere in ``exc``'s chain."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, QueryCanceled):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def _load(ctx: Context, integration: Integration, run, path: Path, judged: JudgedName, facts,
          partial: bool) -> ImportOutcome:
    settings = ctx.settings
    name, context = judged.name, judged.context
    rejections = Rejections(keep=settings.import_rejected_rows_kept)

    def before_commit(cur, written: int) -> None:
        """Archive the file, then record the commit in DATA's ledger, in the rows' transaction."""
        archive_file(path, facts.sha256, settings.import_archive_dir)
        cur.execute(*ledger.record("import", ledger.RunRef.of(run), integration.id, file_sha256=facts.sha256,
                                   rows_read=rows_read.count, rows_written=written, rows_rejected=rejections.total,
                                   rejected_rows=rejections.sorted_rows()))
    try:
        with ExitStack() as stack:
            stack.enter_context(heartbeat.Heartbeat())  # lets a sweep tell this process is alive
            # a cancelled job whose statement waits on a lock: cancel the statement (its job then ends)
            stack.enter_context(on_cancel(data_db.connection().cancel))
            # Opening reads the header and the first data row: a wrong file is
            # refused here, before the transaction starts. The loader's first
            # pass reuses this opening (a spreadsheet is parsed once).
            try:
                opened = [stack.enter_context(open_records(path, name, integration, facts.kind,
                                                           _first_record_check(integration, judged)))]
            except WrongKind as wrong:
                if judged.renamed and isinstance(wrong, WrongHeader):   # another file's header: say so
                    raise header_refusal(judged, wrong) from None
                if judged.renamed:   # its content does not prove what it is: refused for its name
                    raise FileRefused(str(judged.refusal)) from None
                raise
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
                                      rejections=rejections, before_commit=before_commit, rows_read=rows_read)
            except Exception as exc:
                # the job's cancel stopped the statement (psycopg2's error, peewee's wrapping it, or
                # the loader's LoadFailed saying so): a cancel, not a bug
                cancel = cancel_from_hooks() if _stopped_by_a_cancel(exc) else None
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
        history.finish_run(run, "cancelled", f"Cancelled by {cancel.by or 'someone'} while it was being "
                           "imported; its transaction was rolled back and nothing was written.",
                           rows_rejected=rejections.total, rejected_rows=rejections.sorted_rows())
        cancel.files.append(_outcome(run).as_dict())
        cancel.runs.append(run.id)
        raise
    except BaseException as exc:
        if connection_lost(exc):   # an outage, not a bug: one line, and the run says what happened
            log.warning("import run %s of %s stopped: a database stopped answering (%s)", run.id, name,
                        first_line(exc))
            message = (f"A database stopped answering during the import ({first_line(exc)}); its transaction "
                       "was rolled back and nothing was written.")
            discard_broken_connections()   # the history goes on a connection of its own
        else:
            log.exception("import run %s of %s failed unexpectedly", run.id, name)
            message = "The import stopped on an unexpected error; it has been logged and nothing was written."
        history.finish_run(run, "failed", message, rows_rejected=rejections.total,
                           rejected_rows=rejections.sorted_rows())
        raise
    status = "succeeded" if result.committed else "failed"
    message = result.message
    if judged.renamed:
        message += f" The file was judged as {judged.judged} (its name without the browser's copy number)."
    history.finish_run(run, status, message, rows_read=result.rows_read,
                       rows_written=result.rows_written, rows_rejected=rejections.total,
                       rejected_rows=rejections.sorted_rows())
    refused_for_rows = not result.committed and not partial and rejections.total
    return _outcome(run, partial_hint(ctx.actor.channel) if refused_for_rows else "")


def _refused_early(ctx: Context, integration: Integration, path: Path, name: str, partial: bool,
                   message: str) -> ImportOutcome:
    """Record a whole-file refusal (nothing was written)."""
    size = path.stat().st_size
    sha = file_sha256(path)[0] if size <= ctx.settings.import_max_bytes else ""
    run = history.start_run(integration.id, name, sha, size, partial, ctx.actor, status="failed")
    history.finish_run(run, "failed", f"Refused: {message} Nothing was written.")
    return _outcome(run)


def _refused(ctx: Context, integration: Integration, name: str, facts, partial: bool,
             message: str) -> ImportOutcome:
    """Record a refusal of a file already inspected (its sha256 and size known)."""
    run = history.start_run(integration.id, name, facts.sha256, facts.size, partial, ctx.actor, status="failed")
    history.finish_run(run, "failed", f"Refused: {message} Nothing was written.")
    return _outcome(run)


def _outcome(run, hint: str = "") -> ImportOutcome:
    """The run as an outcome; ``hint`` (what the reader could do, in their channel's words) is
    added to the message, not to the history, whose page words it for the web."""
    message = " ".join(part for part in (run.message or "", hint) if part)
    return ImportOutcome(run_id=run.id, integration=run.integration, file_name=run.file_name,
                         status=run.status, rows_read=run.rows_read, rows_written=run.rows_written,
                         rows_rejected=run.rows_rejected, message=message)


def ignored(integration: Integration, name: str, archive_name: str) -> ImportOutcome:
    """A file of a .zip that no integration reads (a licence, a readme, Mac metadata): no run."""
    return ImportOutcome(run_id=None, integration=integration.id, file_name=name, status="ignored",
                         rows_read=0, rows_written=0, rows_rejected=0,
                         message=f"Ignored: no integration reads {name} (in {archive_name}); nothing was done with it.")


# ---- many files, and .zip archives of them


@dataclass(frozen=True)
class SourceFile:
    path: Path | None  # None: a .zip member no integration reads, listed as ignored
    name: str  # the name the file is judged by (a .zip member's own name; an ignored one's path in the .zip)
    archive: str | None = None  # the .zip it came from


def import_paths(ctx: Context, integration_id: str, paths: Iterable[str | Path], *, partial: bool = False,
                 force: bool = False, names: Iterable[str] | None = None) -> list[ImportOutcome]:
    """Import each file in turn; a .zip contributes each of its files.

    ``names`` optionally gives the original names of ``paths`` (uploads are
    saved under temporary names). Each file is its own transaction and run,
    and ``ctx.progress`` hears its outcome as soon as it is known. A .zip that
    cannot be opened or is over the archive limits is one failed run under its
    own name, before any of its files is extracted. A file in a .zip that no
    integration reads (``license.txt``, ``__MACOSX/...``) has no run: its
    outcome says "ignored".
    """
    integration = get_integration(integration_id)  # fail fast on an unknown id
    names = list(names) if names is not None else None
    outcomes = []
    for index, path in enumerate(paths):
        path = Path(path)
        name = names[index] if names else path.name
        try:
            for source in _expand(path, name, ctx.settings):
                if source.path is None:
                    outcome = ignored(integration, source.name, source.archive)
                    ctx.progress("imported", 1, 1, f"{outcome.file_name}: {outcome.status}. {outcome.message}")
                    outcomes.append(outcome)
                    continue
                outcomes.append(import_file(ctx, integration, source.path, file_name=source.name,
                                            partial=partial, force=force))
        except FileRefused as refusal:
            outcome = _refused_early(ctx, integration, path, name, partial, str(refusal))
            ctx.progress("imported", 0, None, f"{name}: {outcome.status}. {outcome.message}")
            outcomes.append(outcome)
        except JobCancelled as cancel:   # the files done before the cancelled one stay on the job page
            cancel.files[:0] = [o.as_dict() for o in outcomes]
            cancel.runs[:0] = [o.run_id for o in outcomes if o.run_id is not None]
            raise
    return outcomes


def _expand(path: Path, name: str, settings: Settings):
    """The file itself, or each member of a .zip extracted to a temporary file.

    The archive is judged whole (limits.check_archive, each member's declared
    size) before its first member is extracted; FileRefused says why not.
    Members no integration reads are never extracted: they come as
    ``SourceFile(None, <path in the .zip>)``, in name order with the others.
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
        read = [m for m in members if is_read(m.filename)]
        if not read:
            shown = ", ".join(m.filename for m in members[:5]) + (" and more" if len(members) > 5 else "")
            raise FileRefused(f"{name} holds no file that an integration reads"
                              + (f" (only {shown})." if members else " (it is empty)."))
        for member in read:
            if member.file_size > settings.import_max_bytes:
                raise FileRefused(
                    f"{member.filename} in {name} is {member.file_size:,} bytes, over the import "
                    f"limit of {settings.import_max_bytes:,} bytes (IMPORT_MAX_BYTES); nothing in it was imported.")
        for member in members:
            if not is_read(member.filename):
                yield SourceFile(None, member.filename, name)
                continue
            target = Path(folder) / "member"
            try:
                with archive.open(member) as source, open(target, "wb") as out:
                    _copy_limited(source, out, member.file_size, member.filename)
            except (zipfile.BadZipFile, EOFError, zlib.error, NotImplementedError, RuntimeError) as exc:
                raise FileRefused(f"{member.filename} in {name} could not be extracted ({exc}); the files "
                                  "before it were imported, it and the ones after it were not.") from None
            yield SourceFile(target, Path(member.filename).name, name)


def count_files(archive: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    """The regular files of a .zip, in name order (folders left out)."""
    return sorted((m for m in archive.infolist() if not m.is_dir()), key=lambda m: m.filename)


def is_read(member_name: str) -> bool:
    """Does some integration read this .zip member? Mac metadata (``__MACOSX/``, ``._*``)
    never; otherwise when any integration's name rule accepts its name (or the name a
    browser's copy was saved from). A member only another integration reads is not
    ignored: it is refused, since it was most likely zipped with the wrong files."""
    base = Path(member_name).name
    if member_name.startswith(ZIP_SKIPPED_PREFIXES) or base.startswith("._"):
        return False
    return read_by_any(base, all_integrations())


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
