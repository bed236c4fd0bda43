"""Job pages: the list (/jobs), one job (/jobs/<id>), its JSON (polled for live progress) and Cancel.

Who sees a job: whoever holds its kind's permission (jobs.KIND_PERMISSIONS); who
may cancel it: the user who queued it, or one holding jobs.queue.CANCEL_ANY_PERMISSION.
"""

from __future__ import annotations

from flask import Blueprint, flash, jsonify, redirect, render_template, url_for

from handled import jobs
from handled.auth.permissions import forbidden, login_required
from handled.context import web_context
from handled.timeutil import readable_utc

bp = Blueprint("jobs", __name__, url_prefix="/jobs")
LIST_LIMIT = 50


def _visible_status(job_id: str):
    """The job's status if this user may see jobs of its kind; otherwise an error response.
    An unknown id raises JobNotFound: a 404 page with its sentence."""
    status = jobs.job_status(job_id)
    actor = web_context().actor
    if not jobs.may_see(actor, status):
        return None, forbidden(jobs.KIND_PERMISSIONS.get(status["kind"], "view_system"))
    return _for_page(status, actor), None


def _for_page(status: dict, actor) -> dict:
    """What the page and the JSON add: readable times, links to the runs, may this user cancel."""
    shown = dict(status)
    shown["can_cancel"] = jobs.may_cancel(actor, status)
    for key in ("enqueued_at", "started_at", "ended_at"):
        shown[key + "_text"] = readable_utc(status[key])   # the page's script shows local time
    shown["elapsed_text"] = readable_seconds(status["elapsed_seconds"])
    shown["files"] = [dict(f, run_url=url_for("integrations.run_page", run_id=f["run_id"])
                           if f.get("run_id") is not None else None)   # an ignored .zip member has no run
                      for f in status["files"]]
    return shown


def readable_seconds(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 1:
        return "under a second"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


@bp.get("/")
@login_required
def job_list():
    actor = web_context().actor
    shown = [_for_page(s, actor) for s in jobs.recent_jobs(limit=10 * LIST_LIMIT) if jobs.may_see(actor, s)]
    return render_template("jobs/list.html", jobs=shown[:LIST_LIMIT])


@bp.get("/<job_id>.json")
@login_required
def job_json(job_id):
    status, refusal = _visible_status(job_id)
    return refusal or jsonify(status)


@bp.get("/<job_id>")
@login_required
def job_page(job_id):
    status, refusal = _visible_status(job_id)
    return refusal or render_template("jobs/job.html", job=status)


@bp.post("/<job_id>/cancel")
@login_required
def cancel(job_id):
    status = jobs.cancel_job(web_context(), job_id)   # Forbidden (403) / Conflict (409) pages say why
    if status["finished"]:
        flash("The job was cancelled before it started.", "info")
    else:
        flash("Cancel requested: the worker stops the job within a second or two and rolls back what it "
              "had started.", "info")
    return redirect(url_for("jobs.job_page", job_id=job_id))
