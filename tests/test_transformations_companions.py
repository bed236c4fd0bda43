"""Companions: reference.ground_days is derived from each new delivery matrix and swapped in with it;
a failed or cancelled build leaves the old pair serving (both modes)."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest

from handled.context import system_context
from handled.db import data_db
from handled.transformations.build_plan import BuildCancelled, current_together
from handled.transformations.build_control import BuildControl
from handled.transformations.build_runner import build_and_swap
from handled.transformations.registry import GROUND_SERVICES, Companion, get_transformation
from handled.transformations.service import run_transformation
from tests.support.builds import cancel_a_build_waiting_on_a_lock
from tests.support.databases import connect, superuser_config
from tests.support.reference_data import (add_usps, build_backends, load_delivery_sources, load_random_delivery_sources,
                                          load_zip_sources)
from tests.support.waiting import wait_until
from tests.test_transformations_swap import load_more_origins, scratch_tables

MATRIX = get_transformation("delivery-matrix")
GROUND_DAYS = MATRIX.companions[0]


def ground_days() -> dict:
    """reference.ground_days as {(origin, destination): (ups_gnd, usps_gal, usps_gah, usps_pkg, origin bits, dest bits)}."""
    rows = data_db.execute_sql("SELECT * FROM reference.ground_days").fetchall()
    return {(row[0], row[1]): tuple(row[2:]) for row in rows}


def expected_ground_days() -> dict:
    """What ground_days must hold, worked out here from the live matrix's rows: every origin and
    destination any ground service reaches, crossed; each service's days or None; the bit sets."""
    cells: dict = {}
    for origin, dest, carrier, service, days in data_db.execute_sql(
            "SELECT origin_zip3, dest_zip3, carrier, service, transit_days FROM reference.delivery_matrix").fetchall():
        if (carrier, service) in GROUND_SERVICES:
            cells.setdefault((origin, dest), {})[(carrier, service)] = days
    bits: dict = {}
    for (origin, dest), found in cells.items():
        mask = sum(1 << GROUND_SERVICES.index(service) for service in found)
        bits[("o", origin)] = bits.get(("o", origin), 0) | mask
        bits[("d", dest)] = bits.get(("d", dest), 0) | mask
    origins = sorted(key[1] for key in bits if key[0] == "o")
    dests = sorted(key[1] for key in bits if key[0] == "d")
    return {(o, d): (*(cells.get((o, d), {}).get(service) for service in GROUND_SERVICES),
                     bits[("o", o)], bits[("d", d)]) for o in origins for d in dests}


def built_together() -> bool:
    statement = current_together(MATRIX, GROUND_DAYS)
    return data_db.execute_sql(statement.sql, statement.params).fetchone()[0]


def comment(table: str) -> str | None:
    return data_db.execute_sql("SELECT obj_description(%s::regclass, 'pg_class')", [table]).fetchone()[0]


def matrix_and_companion() -> tuple:
    """Everything a failed build must leave as it was: the matrix's rows, ground_days' rows, their comments."""
    rows = data_db.execute_sql("SELECT * FROM reference.delivery_matrix ORDER BY 1, 2, 3, 4").fetchall()
    return rows, ground_days(), comment("reference.delivery_matrix"), comment("reference.ground_days")


def build_twice(settings) -> None:
    load_zip_sources()
    load_delivery_sources()
    load_more_origins()
    add_usps("700", "200", gal=3)        # an origin only USPS reaches: its UPS cells are NULL
    run_transformation(system_context(settings), "zip3-reference")
    run_transformation(system_context(settings), "delivery-matrix")


def test_ground_days_is_derived_from_the_new_matrix_and_swapped_in_with_it(app, settings):
    build_twice(settings)
    first = ground_days()
    assert first == expected_ground_days()
    assert len(first) == 6 * 5                      # 6 origins x 5 destinations, the empty cells too
    assert first[("700", "300")] == (None, None, None, None, 0b0010, 0b1111)
    assert built_together() and comment("reference.delivery_matrix").startswith("handled build ")
    before = comment("reference.ground_days")

    add_usps("700", "900", gal=1, gah=2)             # a new destination: a new column for every origin
    outcome = run_transformation(system_context(settings), "delivery-matrix")
    assert "derive" in outcome.timings
    assert ground_days() == expected_ground_days() != first
    assert {dest for _, dest in ground_days()} == {"200", "300", "400", "500", "600", "900"}
    assert built_together() and comment("reference.ground_days") != before
    assert scratch_tables() == []


def test_ground_days_matches_the_matrix_on_gappy_data_in_slices(app, settings):
    load_random_delivery_sources(origins=14, destinations=17)
    run_transformation(system_context(replace(settings, transform_parallelism=3)), "delivery-matrix")
    expected = expected_ground_days()
    assert ground_days() == expected and len(expected) > 100
    assert len({bits[4] for bits in expected.values()}) > 1      # origins differ in the services they have


def test_a_build_failing_in_derive_leaves_the_old_matrix_and_ground_days(app, settings):
    build_twice(settings)
    before = matrix_and_companion()
    add_usps("100", "900", pri=2)
    broken = Companion("ground_days", "ground_days.sql")
    broken.__dict__["select_sql"] = GROUND_DAYS.select_sql.replace("min(transit_days) FILTER (WHERE carrier = 'UPS'",
                                                                   "min(transit_days / 0) FILTER (WHERE carrier = 'UPS'")
    with pytest.raises(Exception, match="division by zero"):
        build_and_swap(replace(MATRIX, companions=(broken,)), settings, parallelism=2)
    assert matrix_and_companion() == before
    assert scratch_tables() == []
    wait_until(lambda: build_backends() == 0, message="the build's connections to close")


def test_a_cancelled_build_leaves_the_old_matrix_and_ground_days(app, settings):
    build_twice(settings)
    before = matrix_and_companion()
    add_usps("100", "900", pri=2)
    errors = cancel_a_build_waiting_on_a_lock(settings)
    assert errors and "cancelled" in errors[0], errors
    assert matrix_and_companion() == before and built_together()
    assert scratch_tables() == []


def test_cancelling_the_derive_phase_leaves_the_old_matrix_and_ground_days(app, settings):
    build_twice(settings)
    before = matrix_and_companion()
    add_usps("100", "900", pri=2)
    slow = Companion("ground_days", "ground_days.sql")
    slow.__dict__["select_sql"] = GROUND_DAYS.select_sql.replace(
        "FROM reference.{source}", "FROM reference.{source} CROSS JOIN LATERAL pg_sleep(30) AS nap", 1)
    watcher = connect(superuser_config(settings.data))
    control, errors = BuildControl(), []

    def deriving() -> bool:
        with watcher.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                        "AND query LIKE 'INSERT INTO reference._build_ground_days%%' AND state = 'active'")
            return cur.fetchone()[0] == 1

    def run():
        try:
            build_and_swap(replace(MATRIX, companions=(slow,)), settings, parallelism=2, control=control)
        except BuildCancelled as exc:
            errors.append(exc)

    build = threading.Thread(target=run)
    try:
        build.start()
        wait_until(deriving, message="the build to derive ground_days")
        control.cancel()
        build.join(timeout=20)
        assert not build.is_alive()
    finally:
        control.cancel()
        build.join(timeout=30)
        watcher.close()
    assert len(errors) == 1 and "left unchanged" in str(errors[0])
    assert matrix_and_companion() == before
    assert scratch_tables() == []
    wait_until(lambda: build_backends() == 0, message="the build's connections to close")
