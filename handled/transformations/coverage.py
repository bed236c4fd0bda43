"""Delivery coverage of a facility: its origin ZIP3 to every destination ZIP3, per carrier and service.

The facility comes from PRIMARY (the page picks it) and the delivery matrix
from DATA: this module reads DATA only, through its own proxy, so there is
never a join across the databases. The page is coverage_views.py.

One query reads a table of coverage: every destination ZIP3 of one origin (or
of two, for a comparison) with its primary city, state and population from
``zip3_reference`` and, per destination, the cells of every service aggregated
into arrays (so 918 rows come back, not 918 x 14). Python then pivots the arrays
into the service columns asked for, sorts (stable) and sums the summary; the
template only prints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import redis

from handled.cache import get_redis
from handled.context import Context
from handled.db import data_db
from handled.errors import HandledError, NotFound
from handled.formula_cells import FORMULA_STARTS
from handled.models import Facility

SERVICES_SQL = "SELECT carrier_code, code FROM reference.services ORDER BY carrier_code, code"

# Aggregate the origin's cells per destination first (the index gives them in destination
# order), then join the 918 results to zip3_reference: joining the 12,852 cells first and
# grouping after made PostgreSQL sort them all by text, three times slower. Each array costs
# its parsing in psycopg2: carrier and service travel as one text, origins only when comparing.
COVERAGE_SQL = """
SELECT m.dest_zip3, z.primary_city, z.primary_state, z.total_population,
       coalesce(z.pop_lat, z.geo_lat), coalesce(z.pop_lng, z.geo_lng),
       m.services, m.days, m.scores, m.origins
FROM (SELECT dest_zip3, array_agg(carrier || ' ' || service) AS services, array_agg(transit_days) AS days,
             array_agg(delivery_score) AS scores, {origins} AS origins
      FROM reference.delivery_matrix
      WHERE origin_zip3 = ANY(%(origins)s)
      GROUP BY dest_zip3) m
LEFT JOIN reference.zip3_reference z ON z.zip3 = m.dest_zip3
{state_filter}
ORDER BY m.dest_zip3
"""

STATES_SQL = "SELECT DISTINCT primary_state FROM reference.zip3_reference WHERE primary_state IS NOT NULL ORDER BY 1"

Service = tuple[str, str]           # (carrier, service code)
BUCKETS = ("1", "2", "3", "4", "5+")  # days reached in; ≤1 day counts as 1
FIXED_COLUMNS = ("zip3", "city", "state", "population")


def service_key(service: Service) -> str:
    """The GET/CSV name of a service column: ``UPS-GND``."""
    return f"{service[0]}-{service[1]}"


class Cell(NamedTuple):
    """A tuple, not a frozen dataclass: 12,000 of them are made per page, and a tuple is made 3x faster."""

    days: int
    score: int
    by: int | None = None           # comparison: 0 or 1 (which facility), 2 for both alike; else None


@dataclass(frozen=True)
class Row:
    zip3: str
    city: str | None
    state: str | None
    population: int | None
    cells: tuple[Cell | None, ...]  # one per shown service, None where there is no service
    lat: float | None = None        # the population-weighted centre (else the land-area one), for the map
    lng: float | None = None


@dataclass
class CoverageTable:
    """What the page, the chart and the CSV show for one facility (or the best of two)."""

    origins: tuple[str, ...]
    all_services: list[Service]
    services: list[Service]         # the shown columns
    rows: list[Row]
    states: list[str]               # the states of zip3_reference, for the filter
    summary: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class CoverageQuery:
    """The page's choices, checked: states and services to keep, the column to sort by and its order."""

    states: tuple[str, ...] = ()
    services: tuple[str, ...] = ()  # service keys (UPS-GND); empty: all
    sort: str = "zip3"
    descending: bool = False


MAX_ID = 2**31 - 1                  # facilities.id is a PostgreSQL integer


def parse_facility_id(raw: str | None) -> int:
    """A facility id from a request: a whole number, or NotFound naming what was given."""
    if raw is None:
        raise NotFound("The request names no facility: choose one on the coverage page.")
    text = raw.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 10 or int(text) > MAX_ID:
        raise NotFound(f"There is no facility {raw[:40]!r}: a facility is chosen by its number.")
    return int(text)


LAST_FACILITY_KEY = "handled:coverage:last-facility:{user}"
LAST_FACILITY_TTL = 90 * 24 * 3600


def default_facility(ctx: Context, facilities: list[Facility]) -> Facility | None:
    """What the page shows when none is named: the user's last facility if it still exists,
    else the first active one, else the first."""
    last = None
    if ctx.actor.id is not None:
        try:
            last = get_redis().get(LAST_FACILITY_KEY.format(user=ctx.actor.id))
        except redis.RedisError:
            last = None     # a convenience only: without Redis the page starts at the first facility
    if last is not None:
        for facility in facilities:
            if str(facility.id) == last.decode():
                return facility
    return next((f for f in facilities if f.active), facilities[0] if facilities else None)


def remember_facility(ctx: Context, facility: Facility) -> None:
    """The facility the user last looked at, for the next visit to the page."""
    if ctx.actor.id is None:
        return
    try:
        get_redis().set(LAST_FACILITY_KEY.format(user=ctx.actor.id), str(facility.id), ex=LAST_FACILITY_TTL)
    except redis.RedisError:
        pass


def list_services() -> list[Service]:
    return [tuple(r) for r in data_db.execute_sql(SERVICES_SQL).fetchall()]


def coverage_table(facilities: list[Facility], query: CoverageQuery = CoverageQuery()) -> CoverageTable:
    """The coverage of one facility, or of two side by side: per destination and service the
    fewer days of either, and which facility gives it (``Cell.by``)."""
    all_services = list_services()
    services = _chosen_services(all_services, query.services)
    _check_sort(query.sort, services)
    origins = tuple(f.zip3 for f in facilities)
    params = {"origins": list(origins)}
    state_filter = ""
    if query.states:
        state_filter = "WHERE z.primary_state = ANY(%(states)s)"
        params["states"] = list(query.states)
    column = {f"{carrier} {code}": i for i, (carrier, code) in enumerate(services)}
    rows = []
    sql = COVERAGE_SQL.format(state_filter=state_filter,
                              origins="array_agg(origin_zip3)" if len(origins) > 1 else "NULL::text[]")
    for dest, city, state, population, lat, lng, keys, days, scores, from_origins in data_db.execute_sql(sql, params):
        cells: list[Cell | None] = [None] * len(services)
        if from_origins is None:            # one facility: every cell as it comes
            for key, day, score in zip(keys, days, scores):
                i = column.get(key)
                if i is not None:
                    cells[i] = Cell(day, score)
            rows.append(Row(dest, city, state, population, tuple(cells), lat, lng))
            continue
        for key, day, score, origin in zip(keys, days, scores, from_origins):
            i = column.get(key)
            if i is None:
                continue
            by = _which(origins, origin)
            current = cells[i]
            if current is None or day < current.days:
                cells[i] = Cell(day, score, by)
            elif day == current.days and by is not None and by != current.by:
                cells[i] = Cell(day, score, 2)
        rows.append(Row(dest, city, state, population, tuple(cells), lat, lng))
    rows = sort_rows(rows, query.sort, query.descending, services)
    states = [r[0] for r in data_db.execute_sql(STATES_SQL)]
    table = CoverageTable(origins, all_services, services, rows, states)
    table.summary = summarise(table)
    return table


def _which(origins: tuple[str, ...], origin: str) -> int:
    if origins[0] == origins[1]:
        return 2        # the same origin ZIP3: both facilities give every day alike
    return 0 if origin == origins[0] else 1


def _chosen_services(all_services: list[Service], keys: tuple[str, ...]) -> list[Service]:
    if not keys:
        return all_services
    by_key = {service_key(s): s for s in all_services}
    unknown = [k for k in keys if k not in by_key]
    if unknown:
        raise HandledError(f"There is no service {unknown[0]!r}; the services are "
                           f"{', '.join(by_key)}.")
    return [s for s in all_services if service_key(s) in keys]


def _check_sort(sort: str, services: list[Service]) -> None:
    if sort not in FIXED_COLUMNS and sort not in {service_key(s) for s in services}:
        raise HandledError(f"Cannot sort by {sort!r}: sort by zip3, city, state, population or a shown service "
                           "such as UPS-GND.")


def sort_rows(rows: list[Row], sort: str, descending: bool, services: list[Service]) -> list[Row]:
    """Rows sorted by one column, stable (ties keep ZIP3 order); rows without a value go last either way."""
    if sort in FIXED_COLUMNS:
        def value(row):
            return getattr(row, sort)
    else:
        index = [service_key(s) for s in services].index(sort)

        def value(row):
            cell = row.cells[index]
            return None if cell is None else cell.days
    known = [r for r in rows if value(r) is not None]
    missing = [r for r in rows if value(r) is None]
    known.sort(key=value, reverse=descending)      # Python's sort is stable, reversed too
    return known + missing


def summarise(table: CoverageTable) -> list[dict]:
    """Per shown service: how many of the shown ZIP3s, and what share of their population,
    are reached in 1, 2, 3, 4 and 5+ days (and not at all)."""
    total_zip3 = len(table.rows)
    total_population = sum(r.population or 0 for r in table.rows)
    summary = []
    for i, service in enumerate(table.services):
        zip3s = dict.fromkeys(BUCKETS + ("none",), 0)
        people = dict.fromkeys(BUCKETS + ("none",), 0)
        for row in table.rows:
            cell = row.cells[i]
            bucket = "none" if cell is None else BUCKETS[min(max(cell.days, 1), 5) - 1]
            zip3s[bucket] += 1
            people[bucket] += row.population or 0
        summary.append({
            "service": service, "key": service_key(service),
            "zip3_counts": zip3s, "population": people,
            "zip3_share": {b: (zip3s[b] / total_zip3 if total_zip3 else None) for b in zip3s},
            "population_share": {b: (people[b] / total_population if total_population else None) for b in people},
        })
    return summary


def csv_safe(value):
    """A text cell a spreadsheet would run as a formula gets a leading apostrophe (the starts of
    handled/formula_cells.py; stricter than its ``neutralise``: a cell here is never a number in
    text, so even ``-1`` is prefixed)."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_rows(table: CoverageTable, names: tuple[str, ...] = ()):
    """The table as CSV rows (header first): days per service; with two facilities, who gives each."""
    header = ["zip3", "city", "state", "population"] + [f"{c} {s} days" for c, s in table.services]
    if len(table.origins) > 1:
        header += [f"{c} {s} from" for c, s in table.services]
    yield header
    for row in table.rows:
        line = [csv_safe(row.zip3), csv_safe(row.city or ""), csv_safe(row.state or ""),
                "" if row.population is None else row.population]
        line += ["" if c is None else c.days for c in row.cells]
        if len(table.origins) > 1:
            line += ["" if c is None else csv_safe(_by_name(c.by, names)) for c in row.cells]
        yield line


def _by_name(by: int | None, names: tuple[str, ...]) -> str:
    if by == 2:
        return "both"
    return names[by] if by is not None and by < len(names) else ""
