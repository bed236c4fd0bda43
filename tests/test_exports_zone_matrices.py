"""Zone matrices: read from reference.ground_days after a build, byte for byte what aggregating the
matrix gives; from the matrix when ground_days does not describe it; a sentence when a table is missing."""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager

import pytest

from handled.context import system_context
from handled.db import data_db
from handled.exports import builders, service
from handled.exports.registry import EXPORTS, get_export
from handled.transformations import history
from handled.transformations.registry import GROUND_SERVICES
from handled.transformations.service import run_transformations
from tests.support.databases import connect, superuser_config
from tests.support.reference_data import (add_usps, build_reference_tables, load_random_delivery_sources,
                                          write_reference)

ZONE_MATRICES = [e.id for e in EXPORTS.values() if e.kind == "zone-matrix"]


def aggregated_from_the_matrix(export_id: str) -> bytes:
    """The zone matrix as the 11M-row aggregate makes it (what every export did before ground_days)."""
    export = get_export(export_id)
    with data_db.atomic():
        body, _ = builders.zone_matrix_body(*builders.zone_matrix_from_matrix(export))
    return body


def downloaded(settings, export_id: str) -> bytes:
    return b"".join(service.stream_export(system_context(settings), export_id))


@pytest.fixture
def never_aggregate(monkeypatch):
    """Fail the test if an export aggregates the matrix instead of reading ground_days."""
    def refuse(export):
        raise AssertionError(f"{export.id} aggregated the matrix")
    monkeypatch.setattr(builders, "zone_matrix_from_matrix", refuse)


@contextmanager
def table_aside(table: str):
    """``reference.<table>`` renamed away (as if it was never migrated), then back."""
    write_reference(f"ALTER TABLE reference.{table} RENAME TO {table}_aside")
    try:
        yield
    finally:
        write_reference(f"ALTER TABLE reference.{table}_aside RENAME TO {table}")


def test_every_zone_matrix_export_services_are_columns_of_ground_days():
    for export_id in ZONE_MATRICES:
        assert set(get_export(export_id).services) <= set(GROUND_SERVICES), export_id


@pytest.mark.parametrize("origins, destinations, seed", [(14, 17, 0.3), (9, 23, 0.7)])
def test_after_a_build_each_zone_matrix_is_the_matrix_aggregate_byte_for_byte(app, settings, origins, destinations,
                                                                               seed):
    load_random_delivery_sources(origins, destinations, seed)
    run_transformations(system_context(settings), ["delivery-matrix"])
    direct = {export_id: aggregated_from_the_matrix(export_id) for export_id in ZONE_MATRICES}
    shapes = set()
    for export_id in ZONE_MATRICES:
        assert builders.ground_days_current(get_export(export_id))
        body = downloaded(settings, export_id)
        assert body == direct[export_id], export_id
        data = json.loads(body)
        shapes.add((len(data["origins"]), len(data["destinations"])))
        assert 99 in {days for row in data["matrix"] for days in row}
    assert len(shapes) > 1        # the exports' origins and destinations differ: the bit sets matter


def test_after_a_build_the_exports_read_ground_days_not_the_matrix(app, settings, never_aggregate):
    build_reference_tables(settings)
    assert json.loads(downloaded(settings, "zone-matrix.json")) == {
        "origins": ["100", "700"], "destinations": ["200", "300", "400", "500", "600"],
        "matrix": [[2, 1, 5, 3, 4], [3, 99, 99, 99, 99]]}
    assert json.loads(downloaded(settings, "zone-matrix-usps.json"))["matrix"] == [[2, 2], [3, 99]]


def test_empty_sources_give_empty_matrices_either_way(app, settings, never_aggregate):
    run_transformations(system_context(settings), ["delivery-matrix"])
    for export_id in ZONE_MATRICES:
        assert json.loads(downloaded(settings, export_id)) == {"origins": [], "destinations": [], "matrix": []}


def test_a_matrix_built_before_ground_days_existed_is_aggregated(app, settings, caplog):
    """After the upgrade that adds ground_days, the live matrix has no build comment and ground_days is
    empty: the exports aggregate the matrix (right, slower) until delivery-matrix is rebuilt."""
    build_reference_tables(settings)
    expected = {export_id: downloaded(settings, export_id) for export_id in ZONE_MATRICES}
    write_reference("TRUNCATE reference.ground_days; COMMENT ON TABLE reference.delivery_matrix IS NULL; "
                    "COMMENT ON TABLE reference.ground_days IS NULL")
    with caplog.at_level(logging.WARNING, logger="handled.exports"):
        for export_id in ZONE_MATRICES:
            assert not builders.ground_days_current(get_export(export_id))
            body, _ = builders.zone_matrix_json(get_export(export_id))
            assert body == expected[export_id]
    assert "ground_days was not built with the live delivery_matrix" in caplog.text


def test_without_ground_days_the_exports_aggregate_the_matrix(app, settings):
    build_reference_tables(settings)
    expected = downloaded(settings, "zone-matrix.json")
    with table_aside("ground_days"):
        body, _ = builders.zone_matrix_json(get_export("zone-matrix.json"))
    assert body == expected


@pytest.mark.parametrize("export_id, table", [("zone-matrix.json", "delivery_matrix"),
                                              ("delivery_matrix.csv", "delivery_matrix"),
                                              ("zip3-reference.json", "zip3_reference")])
def test_a_missing_table_is_a_sentence_on_the_page_and_the_cli(app, settings, login_client, runner, export_id, table):
    sentence = f"{export_id} cannot be written: the DATA database has no table reference.{table}."
    client = login_client(permissions=["download_exports"])
    with table_aside(table):
        response = client.get(f"/exports/{export_id}")
        result = runner.invoke(args=["exports", "write", export_id, "-o", "-"])
    assert response.status_code == 503 and sentence in response.get_data(as_text=True)
    assert result.exit_code == 1 and sentence in result.output and "Traceback" not in result.output
    assert "migrate the DATA database" in result.output


def test_a_run_id_used_again_after_primary_is_restored_is_a_new_version(app, settings):
    """The cached JSON is keyed by the export's version: a restored PRIMARY hands out run ids again,
    and the first download after the next build must be the new matrix, not the cached old one."""
    build_reference_tables(settings)
    old = downloaded(settings, "zone-matrix-usps.json")                      # cached in Redis
    matrix = history.last_success("delivery-matrix")
    primary = connect(superuser_config(settings.primary))
    with primary.cursor() as cur:                                            # PRIMARY as it was before that run
        cur.execute("DELETE FROM config.transformation_runs WHERE id >= %s", (matrix.id,))
        cur.execute("SELECT setval(pg_get_serial_sequence('config.transformation_runs', 'id'), %s, false)",
                    (matrix.id,))
    primary.close()
    add_usps("700", "300", gal=1)
    assert run_transformations(system_context(settings), ["delivery-matrix"])[0].run_id == matrix.id
    new = downloaded(settings, "zone-matrix-usps.json")
    assert new != old and json.loads(new)["matrix"] == [[2, 2], [3, 1]]
