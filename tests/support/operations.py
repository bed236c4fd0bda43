"""Helpers of the operations tests (backup, restore, split, rebuild): a populated PRIMARY, every
integration imported (so the archive and the history can rebuild DATA), and per-table
comparisons read straight from PostgreSQL."""

from __future__ import annotations

import json

from handled.context import system_context
from handled.integrations.service import import_file
from handled.models import (Facility, FacilityOrganization, ImportRun, Organization, TransformationRun)
from handled.schema.names import SCRATCH_LIKE_PATTERNS
from tests.support.accounts import make_user
from handled.transformations.service import run_transformations
from tests.support.databases import connect
from tests.support.import_files import (USPS_NAME, gaz_row, ground_row, usps_row, uszip_row, write_gaz, write_ground,
                                        write_usps, write_uszips, write_zone_chart, zone_row)


def populate_primary(app) -> dict:
    """Users with seeded and custom roles, customers, run history and audit rows."""
    admin = make_user(app, role="admin", email="boss@example.test", name="Boss")
    lead = make_user(app, permissions=["view_customers", "run_imports"], email="lead@example.test",
                     name="Zoë Lead")  # non-ASCII on purpose
    seller = make_user(app, role="salesperson", email="seller@example.test", name="Sam Tab\tSeller")
    with app.app_context():
        orgs = [Organization.create(code=f"ORG{i}", name=f"Org {i} \\ \"quoted\"", contact_email=None)
                for i in range(1, 6)]
        facilities = [Facility.create(code=f"FAC{i}", name=f"Facility {i}", zip=f"0{i}123",
                                      timezone="America/New_York") for i in range(1, 4)]
        for facility in facilities:
            for org in orgs[:3]:
                FacilityOrganization.create(facility=facility, organization=org)
        Organization.delete().where(Organization.code == "ORG5").execute()  # leaves a gap in the ids
        ImportRun.create(integration="us_zips", file_name="zips.csv", file_sha256="a" * 64, file_size=10,
                         status="succeeded", rows_read=3, rows_written=3,
                         rejected_rows=[{"line": 2, "reason": "bad\nzip"}])
        TransformationRun.create(transformation="zip3_reference", status="succeeded", phase_timings={"build": 1.5})
    return {"admin": admin, "lead": lead, "seller": seller}


def import_everything(app, files):
    """Every integration, with history worth following: a replaced file and two upserted ones."""
    files.mkdir()
    ctx = system_context(app.config["HANDLED_SETTINGS"])
    with app.app_context():
        old = write_uszips(files / "uszips.csv", [uszip_row("10001", population="5")])
        assert import_file(ctx, "us-zips", old).status == "succeeded"
        (files / "v2").mkdir()
        zips = [uszip_row("10001", population="100", zcta="TRUE"), uszip_row("10002", population="300", zcta="TRUE"),
                uszip_row("20001", city="Yew", state_id="MD", state_name="Maryland", population="7", zcta="TRUE"),
                uszip_row("30001", city="Early", state_id="FL", state_name="Florida", population="50", zcta="TRUE")]
        assert import_file(ctx, "us-zips", write_uszips(files / "v2" / "uszips.csv", zips)).status == "succeeded"
        gaz = [gaz_row("10001"), gaz_row("10002", aland="300"), gaz_row("20001"), gaz_row("30001")]
        assert import_file(ctx, "gaz-zcta", write_gaz(files / "2020_Gaz_zcta_national.txt", gaz)).status == "succeeded"
        for origin, rows in (("100", [zone_row("200"), zone_row("300")]), ("200", [zone_row("100")])):
            assert import_file(ctx, "ups-zones", write_zone_chart(files / f"{origin}.xlsx", rows)).status == "succeeded"
        ground = [ground_row("10001", "20001", "MD", "2"), ground_row("10001", "30001", "FL", "3")]
        assert import_file(ctx, "ups-ground-service", write_ground(files / "10001.csv", ground)).status == "succeeded"
        usps = [usps_row("100", "200"), usps_row("100", "300"), usps_row("200", "100")]
        assert import_file(ctx, "usps-3d-base", write_usps(files / USPS_NAME, usps)).status == "succeeded"
        run_transformations(ctx, [], run_all=True)


# DATA's run ledger names the runs that committed there (handled/ledger.py): a DATA rebuilt from
# the archive holds the same rows but was written by new runs, so its ledger differs by design.
RUN_LEDGER = "workspace.run_ledger"


def rebuilt_alike(after: dict, before: dict) -> list[str]:
    """The tables of two ``table_fingerprints`` of DATA that differ, the run ledger aside."""
    return sorted(table for table in set(before) | set(after)
                  if table != RUN_LEDGER and after.get(table) != before.get(table))


def table_fingerprints(name: str, schemas) -> dict:
    """Every table of ``schemas`` (a partitioned one as one table, scratch tables left out):
    its rows as JSON text sorted, for exact comparison. The audit rows a split or unsplit
    writes into its target after verifying the copy are not part of the copy: left out."""
    conn = connect(name)
    out = {}
    with conn.cursor() as cur:
        cur.execute("SET TimeZone = 'UTC'")
        cur.execute("SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = ANY(%s) AND c.relkind IN ('r', 'p') AND NOT c.relispartition "
                    "AND NOT c.relname LIKE ANY(%s)", (list(schemas), list(SCRATCH_LIKE_PATTERNS)))
        for schema, table in cur.fetchall():
            skip = (" WHERE action NOT IN ('db.split', 'db.unsplit')"
                    if (schema, table) == ("config", "audit_log") else "")
            cur.execute(f'SELECT row_to_json(t)::text FROM "{schema}"."{table}" t{skip}')
            out[f"{schema}.{table}"] = sorted(row[0] for row in cur.fetchall())
    conn.close()
    return out


def sequence_values(name: str, schemas) -> dict:
    conn = connect(name)
    out = {}
    with conn.cursor() as cur:
        cur.execute("SELECT schemaname || '.' || sequencename, last_value FROM pg_sequences "
                    "WHERE schemaname = ANY(%s)", (list(schemas),))
        out = dict(cur.fetchall())
    conn.close()
    return out


def dumps(value) -> str:
    return json.dumps(value, sort_keys=True, default=str)
