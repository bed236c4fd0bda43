"""Pages: transformations (status, last run, rows, sources' freshness, Run button)."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from markupsafe import Markup

from handled.jobs import JobAlreadyQueued
from handled.auth.permissions import permission_required
from handled.context import web_context
from handled.transformations import history, service
from handled.transformations.registry import UnknownTransformation, get_transformation

bp = Blueprint("transformations", __name__, url_prefix="/transformations")
PERMISSION = "run_transformations"


@bp.get("/")
@permission_required(PERMISSION)
def overview():
    rows = service.describe_transformations()
    for row in rows:    # a job that has it queued or running (its Run button is disabled meanwhile)
        row["job_id"] = service.queued_job(row["transformation"].id)
    return render_template("transformations/overview.html", rows=rows,
                           runs=history.recent_runs(limit=20), phases=service.PHASES)


def _with_job_link(sentence: str, job_id: str | None) -> Markup:
    """The refusal's sentence with a link to the job that is doing the work."""
    if not job_id:
        return Markup("{}").format(sentence)
    return Markup('{} <a href="{}">See that job</a>.').format(sentence, url_for("jobs.job_page", job_id=job_id))


@bp.post("/<transformation_id>/run")
@permission_required(PERMISSION)
def run(transformation_id):
    try:
        t = get_transformation(transformation_id)
        job_id = service.enqueue_transformation(web_context(), t.id,
                                                result_url=url_for("transformations.overview"))
    except UnknownTransformation:
        abort(404)
    except history.AlreadyRunning as exc:
        flash(_with_job_link(str(exc), exc.run.job_id), "error")
        return redirect(url_for("transformations.overview"))
    except JobAlreadyQueued as exc:
        flash(_with_job_link(str(exc), exc.job_id), "error")
        return redirect(url_for("transformations.overview"))
    flash(f"{t.name} is queued; a worker (flask jobs worker) will run it.", "info")
    return redirect(url_for("jobs.job_page", job_id=job_id))
