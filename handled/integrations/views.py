"""Pages: integrations overview, upload form, run history, run page, rejected rows as CSV."""

from __future__ import annotations

import csv
import io

from flask import (Blueprint, Response, abort, current_app, flash, redirect, render_template, request,
                   url_for)

from handled import runs
from handled.auth.permissions import permission_required
from handled.context import web_context
from handled.formula_cells import neutralise
from handled.integrations import history, options
from handled.integrations.registry import UnknownIntegration, all_integrations, get_integration
from handled.integrations.service import ImportRequestError
from handled.integrations.status import table_row_counts
from handled.integrations.submit import save_uploads, submit_import
from handled.request_limits import accepts_uploads

bp = Blueprint("integrations", __name__, url_prefix="/integrations")
PERMISSION = "run_imports"


@bp.get("/")
@permission_required(PERMISSION)
def overview():
    runs.sweep_dead_runs("import")
    counts = table_row_counts()
    rows = [{"integration": i, "rows": counts.get(i.id, 0), "last": history.last_success(i.id)}
            for i in all_integrations()]
    return render_template("integrations/overview.html", rows=rows, runs=history.recent_runs(limit=20))


@bp.get("/<integration_id>")
@permission_required(PERMISSION)
def integration_page(integration_id):
    integration = _integration_or_404(integration_id)
    runs.sweep_dead_runs("import")
    return render_template("integrations/integration.html", integration=integration,
                           runs=history.recent_runs(integration.id, limit=50), **_form_values())


def _form_values(offer: str | None = None) -> dict:
    """What the upload form needs: limits, the boxes' labels, and which box to tick."""
    settings = web_context().settings
    # a file sent through the page cannot be larger than the upload that carries it, so the
    # per-file limit shown is the smaller of the two, in MB like the upload's (1 MB = 2**20 bytes)
    per_file = min(settings.import_max_bytes, settings.max_upload_mb * 1024 * 1024)
    return {"file_mb": _megabytes(per_file), "upload_mb": f"{settings.max_upload_mb:,}",
            "labels": options.LABELS, "ticked": offer}


def _megabytes(size: int) -> str:
    """1048576 -> "1", 1572864 -> "1.5", 1000 -> "0.001" (never "0": a limit is never nothing)."""
    mb = size / (1024 * 1024)
    if mb >= 1 and mb == int(mb):
        return f"{int(mb):,}"
    return f"{mb:,.1f}" if mb >= 1 else f"{mb:.3g}"


@bp.post("/<integration_id>/import")
@permission_required(PERMISSION)
@accepts_uploads   # MAX_UPLOAD_MB instead of the 64 KiB of every other route (handled/request_limits.py)
def upload(integration_id):
    integration = _integration_or_404(integration_id)
    ctx = web_context()
    files = [f for f in request.files.getlist("files") if f and f.filename]
    if not files:
        flash("Choose one or more files (or a .zip of them) to import.", "error")
        return redirect(url_for(".integration_page", integration_id=integration.id))
    result_url = url_for(".integration_page", integration_id=integration.id)
    try:
        folder, paths, names = save_uploads(files, ctx.settings)
        submission = submit_import(ctx, integration.id, folder, paths, names,
                                   partial=request.form.get("partial") == "on",
                                   force=request.form.get("force") == "on", result_url=result_url)
    except ImportRequestError as problem:
        flash(str(problem), "error")
        return redirect(url_for(".integration_page", integration_id=integration.id))
    return _after_submission(integration.id, submission)


def _after_submission(integration_id: str, submission):
    if submission.job_id is not None:
        flash(f"The import runs in the background (job {submission.job_id}); its runs appear on "
              f"the {integration_id} page as each file finishes.", "info")
        return redirect(_job_page_url(submission.job_id)
                        or url_for(".integration_page", integration_id=integration_id))
    outcomes = submission.outcomes
    for outcome in outcomes:
        flash(f"{outcome.file_name}: {outcome.status}. {outcome.message}",
              "info" if outcome.clean else "error")
    with_runs = [o for o in outcomes if o.run_id is not None]
    if len(with_runs) == 1:
        return redirect(url_for(".run_page", run_id=with_runs[0].run_id))
    return redirect(url_for(".integration_page", integration_id=integration_id))


def _job_page_url(job_id: str) -> str | None:
    """The job queue's page for ``job_id`` (jobs.job_page), if the app has it."""
    if "jobs.job_page" not in current_app.view_functions:
        return None
    return url_for("jobs.job_page", job_id=job_id)


@bp.get("/runs/<int:run_id>")
@permission_required(PERMISSION)
def run_page(run_id):
    run = _run_or_404(run_id)
    offer = offered_option(run)
    integration = _integration_or_none(run.integration)
    return render_template("integrations/run.html", run=run, took=history.duration_seconds(run),
                           offer=offer, integration=integration, **_form_values(offer))


def offered_option(run) -> str | None:
    """The upload form's box that would have changed this run's fate: "force" for a file skipped
    as already imported, "partial" for one refused for its bad rows; None otherwise."""
    if run.status == "skipped":
        return "force"
    if run.status == "failed" and run.rows_rejected and not run.partial:
        return "partial"
    return None


def _integration_or_none(integration_id: str):
    try:
        return get_integration(integration_id)
    except UnknownIntegration:
        return None


@bp.get("/runs/<int:run_id>/rejected.csv")
@permission_required(PERMISSION)
def rejected_csv(run_id):
    run = _run_or_404(run_id)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["line", "column", "value", "reason"])
    for row in run.rejected_rows:
        writer.writerow([row["line"], row["column"], neutralise(row["value"]), neutralise(row["reason"])])
    name = f"import-run-{run.id}-rejected.csv"
    return Response(buffer.getvalue(), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


def _integration_or_404(integration_id: str):
    try:
        return get_integration(integration_id)
    except UnknownIntegration as problem:
        abort(404, description=str(problem))


def _run_or_404(run_id: int):
    run = history.get_run(run_id)
    if run is None:
        abort(404, description=f"There is no import run {run_id}.")
    return run
