"""Delivery coverage of a facility: its origin ZIP3 to every destination ZIP3, per carrier and service.

The facility comes from PRIMARY (the page picks it) and the delivery matrix
from DATA: this module reads DATA only, through its own proxy, so there is
never a join across the databases. The page is coverage_views.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from handled.db import data_db
from handled.models import Facility

COVERAGE_SQL = """
SELECT dest_zip3, carrier, service, transit_days, delivery_score
FROM reference.delivery_matrix
WHERE origin_zip3 = %s
ORDER BY dest_zip3
"""

Service = tuple[str, str]           # (carrier, service code)


@dataclass(frozen=True)
class FacilityCoverage:
    """Services (columns) and one row per destination ZIP3 with (days, score) per service."""

    origin: str
    services: list[Service]
    destinations: dict[str, dict[Service, tuple[int, int]]]


def facility_coverage(facility: Facility) -> FacilityCoverage:
    services = [tuple(r) for r in data_db.execute_sql(
        "SELECT carrier_code, code FROM reference.services ORDER BY carrier_code, code").fetchall()]
    destinations: dict[str, dict] = {}
    for dest, carrier, service, days, score in data_db.execute_sql(COVERAGE_SQL, (facility.zip3,)):
        destinations.setdefault(dest, {})[(carrier, service)] = (days, score)
    return FacilityCoverage(facility.zip3, services, destinations)
