"""The coverage page: pick a facility, see its delivery days and scores to every destination ZIP3."""

from __future__ import annotations

from flask import Blueprint, render_template, request

from handled.auth.permissions import permission_required
from handled.customers.services import list_facilities
from handled.transformations.coverage import facility_coverage

bp = Blueprint("coverage", __name__, url_prefix="/coverage")


@bp.get("/")
@permission_required("view_customers")
def coverage_page():
    facilities = list_facilities()
    raw = request.args.get("facility", "")
    chosen = next((f for f in facilities if f.id == int(raw)), None) if raw.isdigit() else None
    return render_template("transformations/coverage.html", facilities=facilities, chosen=chosen,
                           coverage=facility_coverage(chosen) if chosen else None)
