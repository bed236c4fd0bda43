"""The transformations handled knows: what each reads, what it builds, what it needs first.

Each transformation is one SELECT in ``sql/<name>.sql``; the runner inserts its
rows into a scratch table beside the live target and swaps it in (build_plan.py, build_runner.py).

A transformation with a ``split_column`` is built in slices that run side by
side, one connection each: its SELECT takes ``%(split_from)s`` and
``%(split_to)s`` (NULL = unbounded) and must return only rows whose split
column lies in ``[split_from, split_to)``; ``split_values_sql`` lists values
of that column (each once) to cut slices holding about as many of them. Its live
table is partitioned by range of that column, one partition per slice. (Such a
SELECT goes through psycopg2's parameter substitution: write a literal % as %%.)

A transformation may have ``companions``: small tables derived from its rows
that readers need pre-aggregated (delivery-matrix's ``ground_days``, what the
zone-matrix exports read). Each is one SELECT reading the new rows from
``reference.{source}`` (the build table), built after the transformation's keys
and swapped in with it in the same transaction, so a companion always describes
the live table beside it; a failed or cancelled build leaves both as they were.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from handled.errors import NotFound

SQL_DIR = Path(__file__).resolve().parent / "sql"
SCHEMA = "reference"


# The ground services of reference.ground_days, in the order of its columns and of the
# bits of its origin_services / dest_services (sql/ground_days.sql, migration 0005).
GROUND_SERVICES: tuple[tuple[str, str], ...] = (("UPS", "GND"), ("USPS", "GAL"), ("USPS", "GAH"), ("USPS", "PKG"))


def ground_column(carrier: str, service: str) -> str:
    """The column of reference.ground_days holding a ground service's days (``ups_gnd``)."""
    if (carrier, service) not in GROUND_SERVICES:
        raise KeyError(f"{carrier} {service} is not a ground service of reference.ground_days")
    return f"{carrier}_{service}".lower()


def ground_bit(carrier: str, service: str) -> int:
    """The bit of a ground service in reference.ground_days' origin_services / dest_services."""
    return 1 << GROUND_SERVICES.index((carrier, service))


class UnknownTransformation(NotFound):
    """No transformation has the id the user gave."""


@dataclass(frozen=True)
class Companion:
    """A table derived from a transformation's new rows, built and swapped in with them."""

    target: str                      # table in the reference schema
    sql_file: str                    # a SELECT reading reference.{source}

    @cached_property
    def select_sql(self) -> str:
        return (SQL_DIR / self.sql_file).read_text()

    def render_select(self, source: str) -> str:
        """The SELECT reading the rows of ``reference.<source>`` (the build table, or the live one)."""
        return self.select_sql.replace("{source}", source)

    @property
    def qualified_target(self) -> str:
        return f"{SCHEMA}.{self.target}"


@dataclass(frozen=True)
class Transformation:
    id: str
    name: str
    target: str                      # table in the reference schema
    source_tables: tuple[str, ...]   # workspace tables the SELECT reads
    source_integrations: tuple[str, ...]  # imports that fill those tables (for freshness)
    depends_on: tuple[str, ...] = ()
    sql_file: str = ""
    description: str = ""
    split_column: str | None = None      # build in slices by range of this column
    split_values_sql: str | None = None  # SELECT of values of that column, to cut slices at
    companions: tuple[Companion, ...] = ()  # derived from the new rows, swapped in with them

    @cached_property
    def select_sql(self) -> str:
        return (SQL_DIR / self.sql_file).read_text()

    def render_select(self, cursor, split_from: str | None = None, split_to: str | None = None) -> str:
        """The SELECT as plain SQL for one slice (default: all rows), e.g. to run it in psql."""
        if not self.split_column:
            return self.select_sql
        params = {"split_from": split_from, "split_to": split_to}
        return cursor.mogrify(self.select_sql, params).decode()

    @property
    def qualified_target(self) -> str:
        return f"{SCHEMA}.{self.target}"


TRANSFORMATIONS: dict[str, Transformation] = {t.id: t for t in (
    Transformation(
        id="zip3-reference",
        name="ZIP3 reference",
        target="zip3_reference",
        source_tables=("workspace.us_zips", "workspace.gaz_zcta_national"),
        source_integrations=("us-zips", "gaz-zcta"),
        sql_file="zip3_reference.sql",
        description="One row per ZIP3: ZIP count, population, primary state and city, centroids, land and water.",
    ),
    Transformation(
        id="delivery-matrix",
        name="Delivery matrix",
        target="delivery_matrix",
        source_tables=("workspace.ups_ground_service_zip5", "workspace.ups_zones",
                       "workspace.usps_3d_base_service"),
        source_integrations=("ups-ground-service", "ups-zones", "usps-3d-base"),
        depends_on=("zip3-reference",),
        sql_file="delivery_matrix.sql",
        split_column="origin_zip3",
        # every ZIP3 once, from the dependency: cheap, and origins outside it still
        # land in the first or last slice (the ranges are open at both ends)
        split_values_sql="SELECT zip3 FROM reference.zip3_reference",
        companions=(Companion("ground_days", "ground_days.sql"),),
        description="Transit days, zone and delivery score per origin ZIP3, destination ZIP3, carrier and service.",
    ),
)}


def get_transformation(transformation_id: str) -> Transformation:
    try:
        return TRANSFORMATIONS[transformation_id]
    except KeyError:
        known = ", ".join(TRANSFORMATIONS)
        raise UnknownTransformation(
            f"There is no transformation {transformation_id!r}; known transformations: {known}.") from None


def dependency_order(ids) -> list[str]:
    """``ids`` and everything they depend on, dependencies first."""
    ordered: list[str] = []

    def visit(tid: str, path: tuple[str, ...]) -> None:
        if tid in path:
            raise ValueError(f"transformation dependency cycle: {' -> '.join(path + (tid,))}")
        if tid in ordered:
            return
        for dep in get_transformation(tid).depends_on:
            visit(dep, path + (tid,))
        ordered.append(tid)

    for tid in ids:
        visit(tid, ())
    return ordered
