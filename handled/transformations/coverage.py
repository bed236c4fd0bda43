"""Coverage view: a facility's origin ZIP3 to every destination ZIP3, per carrier and service.

Facilities come from PRIMARY and the delivery matrix from DATA: two queries,
each through its own proxy, never a join across the databases.
"""

from __future__ import annotations

from flask import Blueprint, render_template, request

from handled.auth.permissions import permission_required
from handled.db import data_db
from handled.models import Facility

bp = Blueprint("coverage", __name__, url_prefix="/coverage")

COVERAGE_SQL = """
SELECT dest_zip3, carrier, service, transit_days, delivery_score
FROM reference.delivery_matrix
WHERE origin_zip3 = %s
ORDER BY dest_zip3
"""


def facility_coverage(facility: Facility) -> dict:
    """Services (columns) and one row per destination ZIP3 with (days, score) per service."""
    services = [tuple(r) for r in data_db.execute_sql(
        "SELECT carrier_code, code FROM reference.services ORDER BY carrier_code, code").fetchall()]
    destinations: dict[str, dict] = {}
    for dest, carrier, service, days, score in data_db.execute_sql(COVERAGE_SQL, (facility.zip3,)):
        destinations.setdefault(dest, {})[(carrier, service)] = (days, score)
    return {"origin": facility.zip3, "services": services, "destinations": destinations}


@bp.get("/")
@permission_required("view_customers")
def coverage_page():
    facilities = list(Facility.select().order_by(Facility.code))
    chosen = None
    raw = request.args.get("facility", "")
    if raw.isdigit():
        chosen = next((f for f in facilities if f.id == int(raw)), None)
    coverage = facility_coverage(chosen) if chosen else None
    return render_template("transformations/coverage.html", facilities=facilities, chosen=chosen,
                           coverage=coverage)
