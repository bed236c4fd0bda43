"""The coverage pages: a facility's delivery days and scores to every destination ZIP3, its CSV,
and two facilities compared (the best day of either). Every choice is a GET parameter, read
here and applied on the server, so filters, sorting and the download work without JavaScript:

  facility, other   facility ids (other: the comparison's second facility)
  state             repeatable: keep destinations whose primary state is one of these
  service           repeatable: show these service columns (UPS-GND, USPS-PRI, ...); none: all
  sort, order       a column (zip3, city, state, population or a service key) and asc|desc
"""

from __future__ import annotations

import csv
import io

from flask import Blueprint, Response, render_template, request, url_for
from markupsafe import Markup

from handled.auth.permissions import permission_required
from handled.context import web_context
from handled.customers.services import get_facility, list_facilities
from handled.errors import HandledError
from handled.transformations import coverage
from handled.transformations.coverage_chart import dot_map, summary_chart

bp = Blueprint("coverage", __name__, url_prefix="/coverage")
PERMISSION = "view_customers"


def _query() -> coverage.CoverageQuery:
    order = request.args.get("order", "asc")
    if order not in ("asc", "desc"):
        raise HandledError(f"Cannot order {order!r}: the order is asc or desc.")
    states = tuple(s.strip().upper() for s in request.args.getlist("state") if s.strip())
    services = tuple(s.strip().upper() for s in request.args.getlist("service") if s.strip())
    return coverage.CoverageQuery(states=states, services=services, sort=request.args.get("sort", "zip3"),
                                  descending=order == "desc")


def _columns(table: coverage.CoverageTable, query: coverage.CoverageQuery) -> list[dict]:
    """The header cells: label, and a link that sorts by the column (again: the other way)."""
    args = request.args.to_dict(flat=False)
    columns = [{"key": key, "label": label, "num": key == "population"} for key, label in
               (("zip3", "ZIP3"), ("city", "City"), ("state", "State"), ("population", "Population"))]
    columns += [{"key": coverage.service_key(s), "label": s[1], "carrier": s[0], "num": True} for s in table.services]
    for column in columns:
        current = query.sort == column["key"]
        flip = "desc" if current and not query.descending else "asc"
        column["url"] = url_for(request.endpoint, **{**args, "sort": column["key"], "order": flip},
                                **request.view_args)
        column["arrow"] = ("▼" if query.descending else "▲") if current else ""
        column["sorted"] = ("descending" if query.descending else "ascending") if current else "none"
    return columns


MARKS = ("A", "B", "=")
EMPTY_CELL = '<td class="n">–</td>'


def _cells_html(rows: list[coverage.Row]) -> list[Markup]:
    """Each row's service cells as one piece of HTML. A 918 x 14 table is 12,852 cells; printed
    cell by cell in Jinja they cost two escapes and a branch each (about half the page's time),
    while there are only a few dozen distinct cells (days x score x who). Each distinct cell is
    rendered once here (from integers and fixed letters only) and the rows are joins."""
    seen: dict = {None: EMPTY_CELL}
    html = []
    for row in rows:
        parts = []
        for cell in row.cells:
            piece = seen.get(cell)
            if piece is None:
                mark = "" if cell.by is None else f"<sup>{MARKS[cell.by]}</sup>"
                piece = seen[cell] = f'<td class="s{int(cell.score)}">{int(cell.days)}{mark}</td>'
            parts.append(piece)
        html.append(Markup("".join(parts)))     # safe: built from integers and the fixed strings above
    return html


def _map(table: coverage.CoverageTable, query: coverage.CoverageQuery) -> dict | None:
    """The map shows the service the table is sorted by, else UPS ground if shown, else the first shown."""
    if not table.services:
        return None
    keys = [coverage.service_key(s) for s in table.services]
    index = keys.index(query.sort) if query.sort in keys else keys.index("UPS-GND") if "UPS-GND" in keys else 0
    carrier, code = table.services[index]
    return dot_map(table.rows, index, f"{carrier} {code}")


def _render(facilities, chosen, other=None):
    query = _query()
    compared = [chosen] + ([other] if other is not None else [])
    table = coverage.coverage_table(compared, query)
    csv_args = request.args.to_dict(flat=False)
    csv_args.pop("facility", None)
    return render_template("transformations/coverage.html", facilities=facilities, chosen=chosen, other=other,
                           table=table, query=query, columns=_columns(table, query),
                           rows=zip(table.rows, _cells_html(table.rows)),
                           chart=summary_chart(table.summary), map=_map(table, query),
                           csv_url=url_for("coverage.coverage_csv", facility_id=chosen.id, **csv_args))


@bp.get("/")
@permission_required(PERMISSION)
def coverage_page():
    return _page()


@bp.get("/compare")
@permission_required(PERMISSION)
def coverage_compare():
    """Two facilities side by side; without both named it is the plain page, where the picker chooses."""
    return _page()


def _page():
    ctx = web_context()
    facilities = list_facilities()
    raw = request.args.get("facility")
    if raw is None:
        chosen = coverage.default_facility(ctx, facilities)
        if chosen is None:
            return render_template("transformations/coverage.html", facilities=[], chosen=None, table=None)
    else:
        chosen = get_facility(coverage.parse_facility_id(raw))
        coverage.remember_facility(ctx, chosen)
    other = None
    if request.args.get("other"):      # the picker's "Compare with" (an empty choice: no comparison)
        other = get_facility(coverage.parse_facility_id(request.args.get("other")))
    return _render(facilities, chosen, other)


@bp.get("/facility/<int:facility_id>.csv")
@permission_required(PERMISSION)
def coverage_csv(facility_id):
    chosen = get_facility(facility_id)
    compared = [chosen]
    if request.args.get("other"):
        compared.append(get_facility(coverage.parse_facility_id(request.args.get("other"))))
    table = coverage.coverage_table(compared, _query())
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(
        coverage.csv_rows(table, tuple(f.code for f in compared)))
    name = "coverage-" + "-vs-".join(f"{f.id}" for f in compared) + ".csv"
    return Response(buffer.getvalue(), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})
