"""The home page is an operations dashboard for whoever signs in, and database details live on /system."""

from __future__ import annotations

from datetime import timedelta

import pytest

from handled import heartbeat, runs
from handled.context import system_context
from handled.dashboard import COVERAGE_UNAVAILABLE, ago, home_dashboard
from handled.integrations.registry import REFRESH_EVERY, all_integrations
from handled.integrations.service import import_file
from handled.models import Facility, ImportRun
from handled.timeutil import utcnow
from handled.transformations import history as builds
from tests.support.import_files import uszip_row, usps_row, write_uszips, write_usps
from tests.support.reference_data import build_reference_tables
from tests.support.session_probes import count_primary_statements

@pytest.fixture
def imports(app, imp_settings, files):
    """``imports(integration_id, path)``: a real import by the operator (archive and uploads in tmp)."""
    ctx = system_context(imp_settings)
    return lambda integration_id, path: import_file(ctx, integration_id, path)


SECTIONS = ("Source files", "Reference tables", "Failed runs", "Facilities without coverage")


def page(client, url="/") -> str:
    response = client.get(url)
    assert response.status_code == 200, url
    return response.get_data(as_text=True)


def test_a_warehouse_lead_sees_the_dashboard_and_no_database_details(login_client, settings):
    lead = page(login_client(role="warehouse_lead"))
    for section in SECTIONS:  # customers, imports, transformations and exports: every section
        assert section in lead, section
    for detail in ("0001_config_customer_schemas", "0001_workspace_reference_schemas", "PostgreSQL 1",
                   settings.primary.display(), settings.data.display(), settings.primary.dbname,
                   f"{settings.primary.user}@", "database mode"):
        assert detail not in lead, detail
    assert 'href="/system"' not in lead

    sales = page(login_client(role="salesperson"))  # customers and exports only
    assert "Failed runs" in sales and "Facilities without coverage" in sales
    assert "Source files" not in sales and "Reference tables" not in sales

    nobody = page(login_client(permissions=[]))
    assert not any(section in nobody for section in SECTIONS)
    assert "Your account has no dashboard sections yet" in nobody


def test_view_system_holders_find_the_database_details_on_system(login_client, settings):
    system = page(login_client(permissions=["view_system"]), "/system")
    assert "0001_config_customer_schemas" in system and "0001_workspace_reference_schemas" in system
    assert "PostgreSQL 1" in system
    assert settings.primary.dbname in system and f"{settings.mode} database mode" in system
    assert login_client(role="warehouse_lead").get("/system").status_code == 403


def test_an_import_after_the_last_build_marks_the_table_stale(settings, login_client, imports, files):
    build_reference_tables(settings)
    client = login_client(role="warehouse_lead")
    before = page(client)
    assert "STALE" not in before and before.count("up to date") == 2
    assert before.count("never imported") == len(all_integrations())  # the rows were written by hand

    outcome = imports("us-zips", write_uszips(files / "uszips.csv", [uszip_row("10001")]))
    assert outcome.status == "succeeded"
    after = page(client)
    assert "STALE" in after and "us-zips was imported since the last build" in after
    assert after.count("up to date") == 1  # the delivery matrix reads no us-zips and zip3 was not rebuilt
    assert "uszips.csv" in after and "just now" in after
    assert "building now" not in after
    heartbeat.beat()                     # this process runs it, and is alive
    builds.start_run("zip3-reference")   # a rebuild going now
    assert page(client).count("building now") == 1
    assert f'href="/integrations/runs/{outcome.run_id}"' in after


def test_a_source_older_than_its_refresh_interval_is_flagged_due(login_client, imports, files):
    outcome = imports("usps-3d-base", write_usps(files / "3D_Base_Service_Standard_Directory_01012026.csv",
                                                                [usps_row("005", "006")]))
    assert outcome.status == "succeeded"
    client = login_client(role="warehouse_lead")
    assert "badge-ok\">current" in page(client)
    ImportRun.update(finished_at=utcnow() - REFRESH_EVERY["usps-3d-base"] - timedelta(days=1)).where(
        ImportRun.id == outcome.run_id).execute()
    due = page(client)
    assert "badge-warn\">due" in due and "32 days ago" in due


def test_every_integration_declares_how_often_its_file_is_refreshed():
    assert {i.id for i in all_integrations()} == set(REFRESH_EVERY)


def test_failed_runs_appear_with_the_page_that_explains_them(login_client, imports, files):
    bad = imports("us-zips", write_uszips(files / "uszips.csv", [uszip_row("10001"), uszip_row("1x")]))
    assert bad.status == "failed"
    build = builds.start_run("zip3-reference", job_id="job-123")
    builds.finish_run(build.id, "failed", message="The build ran out of disk.")
    export = runs.start_run("export", export="zone-matrix-json")
    runs.fail_run("export", export.id, "The download was cut off.")

    lead = page(login_client(role="warehouse_lead"))
    assert f'href="/integrations/runs/{bad.run_id}">Import #{bad.run_id}</a>' in lead
    assert f'href="/jobs/job-123">Build #{build.id}</a>' in lead
    assert "The build ran out of disk." in lead and "The download was cut off." in lead
    assert "uszips.csv" in lead

    sales = page(login_client(role="salesperson"))
    assert "The download was cut off." in sales  # exports: theirs
    assert f"Import #{bad.run_id}" not in sales and "The build ran out of disk." not in sales

    fixed = imports("us-zips", write_uszips(files / "uszips.csv", [uszip_row("10001")]))
    assert fixed.status == "succeeded"
    assert "a later run succeeded" in page(login_client(role="warehouse_lead"))


def add_facility(code, zip5, active=True):
    return Facility.create(code=code, name=f"Warehouse {code}", city="Town", state="NY", zip=zip5,
                           timezone="America/New_York", active=active)


def test_a_facility_without_coverage_is_listed_with_its_coverage_link(app, settings, login_client):
    build_reference_tables(settings)   # origins 100 and 700 are in the delivery matrix
    covered = add_facility("NYC", "10001")
    bare = add_facility("ANC", "99501")
    add_facility("OLD", "99502", active=False)
    home = page(login_client(role="salesperson"))
    assert f'href="/coverage/?facility={bare.id}">ANC · Warehouse ANC</a>' in home
    assert f"facility={covered.id}\"" not in home and "OLD" not in home
    assert "facility without coverage" in home

    covered.zip = "70001"
    covered.save()
    bare.delete_instance()
    assert "All 1 active facilities have delivery coverage" in page(login_client(role="salesperson"))


def test_without_data_the_primary_sections_stay_and_coverage_says_why(app, settings):
    add_facility("ANC", "99501")
    with app.app_context():
        board = home_dashboard(system_context(settings), data_available=False)
    assert board.sources is not None and board.tables is not None and board.failed is not None
    assert board.uncovered == [] and board.coverage_problem == COVERAGE_UNAVAILABLE


def test_the_page_costs_the_same_statements_with_many_runs_and_facilities(login_client, imports, files):
    client = login_client(role="admin")

    def add(n):
        add_facility(f"F{n}", f"{10000 + n * 1000:05d}")
        failed = runs.start_run("export", export=f"export-{n}")
        runs.fail_run("export", failed.id, "cut off")
        (files / str(n)).mkdir()
        imports("us-zips", write_uszips(files / str(n) / "uszips.csv", [uszip_row(f"{n + 1:05d}")]))

    def statements():
        page(client)   # warm: the session cache, the pending-invalidation check
        with count_primary_statements() as seen:
            page(client)
        return seen

    add(0)
    few = statements()
    for n in range(1, 30):
        add(n)
    many = statements()
    assert len(many) == len(few), "\n".join(many)
    # session check, the dead-run sweep (one query per kind of run: imports, transformations, exports,
    # backups), sources, builds, failed runs, facilities: a fixed number, whatever the history holds
    assert len(many) <= 10, "\n".join(many)


@pytest.mark.parametrize("seconds, text", [(5, "just now"), (120, "2 minutes ago"), (3 * 3600, "3 hours ago"),
                                           (3 * 86400, "3 days ago"), (90 * 86400, "3 months ago"),
                                           (800 * 86400, "2 years ago"), (86400 + 5, "24 hours ago")])
def test_ages_read_as_a_person_says_them(seconds, text):
    now = utcnow()
    assert ago(now - timedelta(seconds=seconds), now) == text


def test_a_per_origin_source_is_as_fresh_as_its_oldest_origin(login_client, imports, files):
    from tests.support.import_files import ground_row, write_ground

    old = imports("ups-ground-service", write_ground(files / "10001.csv", [ground_row("10001", "00501")]))
    new = imports("ups-ground-service", write_ground(files / "20001.csv", [ground_row("20001", "00501", "DC")]))
    assert (old.status, new.status) == ("succeeded", "succeeded")
    ImportRun.update(finished_at=utcnow() - timedelta(days=45)).where(ImportRun.id == old.run_id).execute()
    home = page(login_client(role="warehouse_lead"))
    row = home[home.index("UPS ground transit times"):home.index("UPS zone charts")]
    assert "20001.csv" in row and "2 files" in row and "just now" in row  # the latest import ...
    assert "badge-warn\">due" in row and "oldest file" in row             # ... but origin 10001 is 45 days old


def test_a_coverage_query_that_fails_leaves_the_page_and_the_connection_working(login_client, monkeypatch):
    from handled import dashboard

    add_facility("ANC", "99501")
    client = login_client(role="admin")
    monkeypatch.setattr(dashboard, "UNCOVERED_SQL", "SELECT zip3 FROM reference.no_such_table WHERE zip3 = ANY(%s)")
    home = page(client)
    assert dashboard.COVERAGE_FAILED in home and "Source files" in home
    monkeypatch.undo()
    assert "ANC · Warehouse ANC" in page(client)   # the next request's connection is fine
    assert page(client, "/admin/users")
