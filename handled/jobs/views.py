"""The job page (/jobs/<id>) and its JSON (/jobs/<id>.json), polled for live progress."""

from __future__ import annotations

from flask import Blueprint, abort, jsonify, render_template

from handled import jobs
from handled.auth import current_user
from handled.auth.permissions import forbidden, login_required

bp = Blueprint("jobs", __name__, url_prefix="/jobs")


def _visible_status(job_id: str):
    """The job's status if this user may see jobs of its kind; otherwise an error response."""
    try:
        status = jobs.job_status(job_id)
    except jobs.JobNotFound:
        abort(404)
    needed = jobs.KIND_PERMISSIONS.get(status["kind"], "view_system")
    if not current_user.has_permission(needed):
        return None, forbidden(needed)
    return status, None


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
