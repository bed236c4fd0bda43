"""The home page: an operations dashboard for the signed-in user (handled/dashboard.py).

Database, migration and server details are the System page's (ops/web.py,
view_system only); home shows none of them.
"""

from flask import Blueprint, render_template, url_for

from handled import runs
from handled.auth.permissions import login_required
from handled.context import web_context
from handled.dashboard import FAILED_RUNS_DAYS, home_dashboard
from handled.ops import degraded

bp = Blueprint("home", __name__)

KIND_LABELS = {"import": "Import", "transformation": "Build", "export": "Export"}


def run_link(run) -> str:
    """The page that tells a failed run's story: its import run, its job, or its kind's page."""
    if run.kind == "import":
        return url_for("integrations.run_page", run_id=run.run_id)
    if run.job_id:
        return url_for("jobs.job_page", job_id=run.job_id)
    if run.kind == "transformation":
        return url_for("transformations.overview")
    return url_for("exports.overview")


@bp.get("/")
@login_required
def index():
    ctx = web_context()
    if ctx.actor.can("run_imports") or ctx.actor.can("run_transformations"):
        runs.sweep_dead_runs()  # a run whose worker died reads as failed, not running forever
    board = home_dashboard(ctx, data_available=degraded.data_reason() is None)
    return render_template("home/index.html", board=board, run_link=run_link, kind_labels=KIND_LABELS,
                           failed_days=FAILED_RUNS_DAYS)


def init_app(app) -> None:
    """Register the home page."""
    app.register_blueprint(bp)
