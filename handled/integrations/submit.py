"""The ``submit_import`` seam between the upload page and the import service.

Small uploads run in the request. Uploads larger than IMPORT_BACKGROUND_BYTES
go to the job queue (handled/jobs/) and a worker runs the very same service;
the uploaded files wait under IMPORT_UPLOAD_DIR (a folder the workers must
see too) and are deleted once their import has run.
"""

from __future__ import annotations

import errno
import logging
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from redis import RedisError
from werkzeug.utils import secure_filename

from handled import jobs
from handled.context import Context
from handled.errors import first_line
from handled.integrations.service import ImportOutcome, ImportRequestError, import_paths
from handled.settings import Settings
from handled.wording import how_many

log = logging.getLogger("handled.integrations")
REFUSED = "Refused: "   # how the import service starts a refused file's run message


@dataclass
class Submission:
    """What happened to an upload: outcomes when it ran inline, else the job id."""

    outcomes: list[ImportOutcome] = field(default_factory=list)
    job_id: str | None = None


def save_uploads(files, settings: Settings) -> tuple[Path, list[Path], list[str]]:
    """Store uploaded files (werkzeug FileStorage) in a fresh folder; keep their names."""
    folder = Path(settings.import_upload_dir) / uuid.uuid4().hex
    paths, names = [], []
    try:
        folder.mkdir(parents=True)
        for index, upload in enumerate(files):
            name = Path(upload.filename or "").name
            path = folder / f"{index:04d}-{secure_filename(name) or 'upload'}"
            upload.save(path)
            paths.append(path)
            names.append(name)
    except OSError as problem:
        # a full disk (or a folder the app may not write) is the operator's to fix, not a bug
        shutil.rmtree(folder, ignore_errors=True)
        log.warning("could not store an upload in %s: %s", settings.import_upload_dir, problem)
        reason = "it is full" if problem.errno in (errno.ENOSPC, errno.EDQUOT) else problem.strerror
        raise ImportRequestError(f"The upload could not be stored in the upload folder (IMPORT_UPLOAD_DIR): "
                                 f"{reason}. Nothing was imported; ask an administrator to free space "
                                 f"there, then try again.") from None
    return folder, paths, names


def submit_import(ctx: Context, integration_id: str, folder: Path, paths: list[Path], names: list[str], *,
                  partial: bool, force: bool, result_url: str | None = None) -> Submission:
    """Run the import now (as ``ctx.actor``), or queue it when the upload is large."""
    settings = ctx.settings
    size = sum(p.stat().st_size for p in paths)
    if size > settings.import_background_bytes:
        try:
            job_id = jobs.enqueue("import", import_job, integration_id, str(folder), [str(p) for p in paths],
                                  names, partial, force, ctx=ctx,
                                  description=_description(integration_id, names),
                                  result_url=result_url)
        except RedisError as exc:
            shutil.rmtree(folder, ignore_errors=True)
            log.warning("could not queue an import of %s: the job queue (Redis) is not answering (%s)",
                        integration_id, first_line(exc))
            raise ImportRequestError("The job queue (Redis) is not answering, so this large upload was not "
                                     "imported; try again in a minute, or use flask integrations import.") from None
        return Submission(job_id=job_id)
    try:
        return Submission(outcomes=import_paths(ctx, integration_id, paths, names=names, partial=partial,
                                                force=force))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _description(integration_id: str, names: list[str]) -> str:
    """What the job pages call an import job: its files by name (up to three), and the integration."""
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return f"Import {shown} ({integration_id})"


def import_job(ctx: Context, integration_id: str, folder: str, paths: list[str], names: list[str],
               partial: bool, force: bool) -> dict:
    """What a worker runs for a queued upload, as the user who uploaded it.

    The service reports bytes read and each file's outcome through the job's
    ``ctx.progress``; the returned dict tells the worker how the job ends
    (``job_outcome``) and lists each file's outcome with its run.
    """
    try:
        outcomes = import_paths(ctx, integration_id, paths, names=names, partial=partial, force=force)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    outcome, message = job_outcome(outcomes)
    return {"runs": [o.run_id for o in outcomes if o.run_id is not None], "statuses": {o.file_name: o.status for o in outcomes},
            "files": [o.as_dict() for o in outcomes], "outcome": outcome, "message": message}


def job_outcome(outcomes: list[ImportOutcome]) -> tuple[str, str]:
    """How an import job ends: "failed" when any file was refused or rejected, "problems" when a
    partial import left rows out, else "finished"; and one sentence saying so."""
    if not outcomes or all(o.status == "ignored" for o in outcomes):
        return "failed", "The upload held no file to import."
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.outcome] = counts.get(o.outcome, 0) + 1
    if len(outcomes) == 1:
        o = outcomes[0]
        said = {"imported": f"{o.file_name} was imported: {how_many(o.rows_written, 'row')} written.",
                "imported with rejected rows": f"{o.file_name} was imported in part: {how_many(o.rows_written, 'row')} "
                                               f"written, {o.rows_rejected:,} rejected.",
                "skipped as a duplicate": f"{o.file_name} was skipped: the same file was imported before.",
                "rejected": f"{o.file_name} was rejected: {o.rows_rejected:,} of {o.rows_read:,} rows were bad, "
                            "so nothing was written.",
                # a refusal already says so ("Refused: ..."): not "failed: Refused: ..."
                "failed": (f"{o.file_name} was refused: {o.message.removeprefix(REFUSED)}"
                           if o.message.startswith(REFUSED) else f"{o.file_name} failed: {o.message}"),
                "cancelled": f"{o.file_name} was cancelled: {o.message}",
                "ignored": f"{o.file_name} was ignored: no integration reads it."}[o.outcome]
    else:
        said = f"{len(outcomes)} files: " + ", ".join(f"{n} {what}" for what, n in counts.items()) + "."
    if counts.get("rejected") or counts.get("failed"):
        return "failed", said
    if counts.get("imported with rejected rows"):
        return "problems", said
    return "finished", said
