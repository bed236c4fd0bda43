"""Import service, run history, archive and CLI across integrations."""

import contextlib
import dataclasses
import hashlib
import threading
import zipfile

from handled.db import connection_lost
from handled.integrations import all_integrations, get_integration
from handled.integrations.archive import archived_path
from handled.integrations.registry import UnknownIntegration
from handled.integrations.service import import_file, import_paths
from handled.context import Actor, system_context
from handled.models import ImportRun
from tests.support.import_files import (USPS_NAME, ground_row, usps_row, uszip_row, write_ground, write_usps,
                                        write_uszips, write_zone_chart, zone_row)
from tests.support.databases import connect
from tests.support.imports import table_digest, table_rows
from tests.support.waiting import wait_until

import pytest


def test_registry_lists_the_five_integrations_with_their_rules():
    ids = [i.id for i in all_integrations()]
    assert ids == ["gaz-zcta", "ups-ground-service", "ups-zones", "us-zips", "usps-3d-base"]
    zones = get_integration("ups-zones")
    assert (zones.target, zones.key, zones.mode) == ("ups_zones", ("origin_zip3", "dest_zip3"), "upsert")
    assert get_integration("us-zips").mode == "replace"
    with pytest.raises(UnknownIntegration, match="There is no integration 'nope'; known: gaz-zcta"):
        get_integration("nope")


def test_history_records_file_sha_size_counts_who_and_how_long(imp_app, files, imp_ctx):
    path = write_uszips(files / "uszips.csv", [uszip_row("00501"), uszip_row("00502")])
    ops = imp_ctx.with_actor(Actor(id=None, email="ops@example.com", channel="cli", system=True))
    outcome = import_file(ops, "us-zips", path)
    run = ImportRun.get_by_id(outcome.run_id)
    assert run.integration == "us-zips" and run.file_name == "uszips.csv"
    assert run.file_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert run.file_size == path.stat().st_size
    assert (run.status, run.rows_read, run.rows_written, run.rows_rejected) == ("succeeded", 2, 2, 0)
    assert run.created_by_email == "ops@example.com" and run.created_by_id is None
    assert run.finished_at >= run.started_at and run.rejected_rows == []


def test_same_content_is_skipped_unless_forced(imp_app, files, imp_ctx):
    path = write_uszips(files / "uszips.csv", [uszip_row("00501")])
    first = import_file(imp_ctx, "us-zips", path)
    again = import_file(imp_ctx, "us-zips", path)
    assert again.status == "skipped" and f"run {first.run_id}" in again.message and "--force" in again.message
    forced = import_file(imp_ctx, "us-zips", path, force=True)
    assert forced.status == "succeeded" and forced.rows_written == 1
    statuses = [r.status for r in ImportRun.select().order_by(ImportRun.id)]
    assert statuses == ["succeeded", "skipped", "succeeded"]


def test_a_failed_file_is_not_skipped_the_next_time(imp_app, files, imp_ctx):
    path = write_uszips(files / "uszips.csv", [uszip_row("0050")])
    assert import_file(imp_ctx, "us-zips", path).status == "failed"
    assert import_file(imp_ctx, "us-zips", path).status == "failed"


def test_imported_files_are_archived_by_sha256(imp_app, imp_settings, files, imp_ctx):
    path = write_uszips(files / "uszips.csv", [uszip_row("00501")])
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    import_file(imp_ctx, "us-zips", path)
    archived = archived_path(imp_settings.import_archive_dir, sha)
    assert archived.read_bytes() == path.read_bytes()


def test_refused_files_are_not_archived(imp_app, imp_settings, files, imp_ctx):
    path = write_uszips(files / "uszips.csv", [uszip_row("0050")])
    import_file(imp_ctx, "us-zips", path)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert not archived_path(imp_settings.import_archive_dir, sha).exists()


def test_files_over_the_size_limit_are_refused_without_reading(imp_app, imp_settings, files, imp_ctx):
    path = write_uszips(files / "uszips.csv", [uszip_row("00501")] * 3)
    small = dataclasses.replace(imp_settings, import_max_bytes=100)
    outcome = import_file(system_context(small), "us-zips", path)
    run = ImportRun.get_by_id(outcome.run_id)
    assert outcome.status == "failed" and "over the import limit of 100 bytes (IMPORT_MAX_BYTES)" in run.message
    assert run.file_sha256 == "" and table_rows("us_zips") == []


def test_rejected_rows_kept_are_capped_but_all_are_counted(imp_app, imp_settings, files, imp_ctx):
    rows = [uszip_row(f"{n:04d}") for n in range(30)]
    capped = dataclasses.replace(imp_settings, import_rejected_rows_kept=5)
    outcome = import_file(system_context(capped), "us-zips", write_uszips(files / "uszips.csv", rows))
    run = ImportRun.get_by_id(outcome.run_id)
    assert run.rows_rejected == 30 and len(run.rejected_rows) == 5
    assert [r["line"] for r in run.rejected_rows] == [2, 3, 4, 5, 6]
    assert "30 of 30 rows were rejected" in run.message


def test_broken_quoting_deep_in_a_file_undoes_the_upsert(imp_app, files, imp_ctx):
    import_file(imp_ctx, "ups-ground-service", write_ground(files / "10001.csv", [ground_row(dest="00501", days="1")]))
    before = table_digest("ups_ground_service_zip5")
    (files / "bad").mkdir()
    lines = [",".join(ground_row(dest=f"{n:05d}", days="3")) for n in range(500, 20500)]
    lines.append('10001,"99999"x,NY,1')
    (files / "bad" / "10001.csv").write_text("\n".join(lines) + "\n")
    outcome = import_file(imp_ctx, "ups-ground-service", files / "bad" / "10001.csv")
    assert outcome.status == "failed" and "is not valid CSV near line 20001" in outcome.message
    assert table_digest("ups_ground_service_zip5") == before


def test_a_zip_of_files_imports_each_member(imp_app, files, imp_ctx):
    charts = [write_zone_chart(files / f"{o}.xlsx", [zone_row("004"), zone_row("005")]) for o in ("007", "010")]
    bundle = files / "charts.zip"
    with zipfile.ZipFile(bundle, "w") as archive:
        for chart in charts:
            archive.write(chart, f"zones/{chart.name}")
        archive.writestr("__MACOSX/zones/._007.xlsx", b"junk")
        archive.writestr("zones/", b"")
    outcomes = import_paths(imp_ctx, "ups-zones", [bundle])
    assert [(o.file_name, o.status) for o in outcomes] == [
        ("__MACOSX/zones/._007.xlsx", "ignored"), ("007.xlsx", "succeeded"), ("010.xlsx", "succeeded")]
    assert ImportRun.select().count() == 2 and len(table_rows("ups_zones")) == 4   # Mac metadata: no run


def test_cli_list_import_history(imp_app, files):
    runner = imp_app.test_cli_runner()
    path = write_usps(files / USPS_NAME, [usps_row("005", "006")])
    result = runner.invoke(args=["integrations", "import", "usps-3d-base", str(path)])
    assert result.exit_code == 0, result.output
    assert f"{USPS_NAME}: succeeded" in result.output
    listing = runner.invoke(args=["integrations", "list"])
    assert listing.exit_code == 0
    line = next(l for l in listing.output.splitlines() if l.startswith("usps-3d-base"))
    assert "workspace.usps_3d_base_service" in line and " 1 rows" in line and USPS_NAME in line
    history = runner.invoke(args=["integrations", "history", "usps-3d-base"])
    assert "succeeded read=1 written=1 rejected=0" in history.output
    assert f"by {Actor.cli_operator().label}" in history.output


def test_cli_exits_non_zero_when_anything_is_rejected(imp_app, files):
    runner = imp_app.test_cli_runner()
    good = write_ground(files / "10001.csv", [ground_row()])
    (files / "b").mkdir()
    bad = write_ground(files / "b" / "10002.csv", [ground_row("10002"), ground_row("10002", "0050")])
    result = runner.invoke(args=["integrations", "import", "ups-ground-service", str(good), str(bad)])
    assert result.exit_code == 1
    assert "10002.csv: failed" in result.output and "2 files: 1 failed, 1 succeeded" in result.output
    # The command itself names each bad line, not just the first.
    assert "10002.csv line 2, dest_zip = '0050': must be exactly 5 digits" in result.output
    partial = runner.invoke(args=["integrations", "import", "ups-ground-service", str(bad), "--partial"])
    assert partial.exit_code == 1 and "10002.csv: succeeded" in partial.output
    assert len(table_rows("ups_ground_service_zip5")) == 2
    shown = runner.invoke(args=["integrations", "history", "--rejected"])
    assert "line 2, dest_zip = '0050': must be exactly 5 digits" in shown.output


def test_cli_names_the_first_rejected_lines_and_points_to_the_rest(imp_app, files):
    rows = [ground_row(dest=f"{n:04d}") for n in range(25)]
    bad = write_ground(files / "10001.csv", rows)
    result = imp_app.test_cli_runner().invoke(args=["integrations", "import", "ups-ground-service", str(bad)])
    assert result.exit_code == 1
    named = [line for line in result.output.splitlines() if line.startswith("  10001.csv line ")]
    assert len(named) == 20 and named[0].startswith("  10001.csv line 1, dest_zip = '0000'")
    assert "... 5 more rejected rows; 'flask integrations history ups-ground-service --rejected'" in result.output


def test_cli_unknown_integration_is_one_line_on_stderr(imp_app, files):
    runner = imp_app.test_cli_runner()
    path = write_ground(files / "10001.csv", [ground_row()])
    result = runner.invoke(args=["integrations", "import", "nope", str(path)])
    assert result.exit_code == 1 and "There is no integration 'nope'" in result.output
    assert "Traceback" not in result.output


def _insert_mode_ground():
    """ups-ground-service as an insert-mode integration (how a sixth might be defined)."""
    return dataclasses.replace(get_integration("ups-ground-service"), id="ground-insert", mode="insert", scope=())


def _load(integration, path, partial=False):
    from handled.integrations.loader import Rejections, load_records
    from handled.integrations.sources import inspect_file, open_records

    facts = inspect_file(path, path.name, integration, 1 << 20)
    rejections = Rejections(keep=100)
    result = load_records(integration, lambda: open_records(path, path.name, integration, facts.kind),
                          integration.match_name(path.name), partial=partial, rejections=rejections)
    return result, rejections


def test_insert_mode_refuses_keys_already_in_the_table(imp_app, files):
    integration = _insert_mode_ground()
    first, _ = _load(integration, write_ground(files / "10001.csv", [ground_row(dest="00501")]))
    assert first.committed and first.rows_written == 1
    (files / "again").mkdir()
    again = write_ground(files / "again" / "10001.csv", [ground_row(dest="00502"), ground_row(dest="00501")])
    before = table_digest("ups_ground_service_zip5")
    result, rejections = _load(integration, again)
    assert not result.committed and table_digest("ups_ground_service_zip5") == before
    assert [(r["line"], r["reason"]) for r in rejections.rows] == [
        (2, "duplicate key: this origin_zip, dest_zip is already in workspace.ups_ground_service_zip5 (insert mode)")]
    partial, rejections = _load(integration, again, partial=True)
    assert partial.committed and partial.rows_written == 1 and rejections.total == 1
    assert [r[1] for r in table_rows("ups_ground_service_zip5")] == ["00501", "00502"]


def test_rebuild_from_archive_restores_the_tables(imp_app, files, imp_ctx):
    runner = imp_app.test_cli_runner()
    import_file(imp_ctx, "ups-zones", write_zone_chart(files / "007.xlsx", [zone_row("004"), zone_row("005")]))
    import_file(imp_ctx, "ups-zones", write_zone_chart(files / "010.xlsx", [zone_row("004")]))
    (files / "v2").mkdir()
    import_file(imp_ctx, "ups-zones", write_zone_chart(files / "v2" / "007.xlsx", [zone_row("005", *["003"] * 6)]))
    import_file(imp_ctx, "us-zips", write_uszips(files / "uszips.csv", [uszip_row("00501")]))
    (files / "v3").mkdir()
    import_file(imp_ctx, "us-zips", write_uszips(files / "v3" / "uszips.csv", [uszip_row("00601")]))
    zones, zips = table_digest("ups_zones"), table_digest("us_zips")
    from handled.db import data_db
    data_db.execute_sql("TRUNCATE workspace.ups_zones, workspace.us_zips")
    result = runner.invoke(args=["integrations", "rebuild", "ups-zones"])
    assert result.exit_code == 0, result.output
    assert result.output.count(": succeeded (run") == 3
    assert runner.invoke(args=["integrations", "rebuild", "us-zips"]).exit_code == 0
    assert table_digest("ups_zones") == zones and table_digest("us_zips") == zips
    again = runner.invoke(args=["integrations", "rebuild", "ups-zones"])
    assert again.output.count(": succeeded (run") == 3  # each content once, not once per rebuild


def test_rebuild_names_a_file_missing_from_the_archive(imp_app, imp_settings, files, imp_ctx):
    import shutil

    import_file(imp_ctx, "us-zips", write_uszips(files / "uszips.csv", [uszip_row("00501")]))
    shutil.rmtree(imp_settings.import_archive_dir)
    result = imp_app.test_cli_runner().invoke(args=["integrations", "rebuild", "us-zips"])
    assert result.exit_code == 1 and "The archive has no copy of uszips.csv (run 1" in result.output


def test_a_run_whose_process_died_is_marked_failed(imp_app, files, imp_ctx):
    from handled.integrations.history import start_run
    from handled.runs import sweep_dead_runs

    dead = start_run("us-zips", "uszips.csv", "ab" * 32, 10, False, imp_ctx.actor)
    ImportRun.update(worker="some-host-that-is-gone:4242").where(ImportRun.id == dead.id).execute()
    alive = start_run("us-zips", "uszips.csv", "cd" * 32, 10, False, imp_ctx.actor)
    from handled.heartbeat import Heartbeat

    with Heartbeat():
        assert sweep_dead_runs("import") == [dead.id]
    assert ImportRun.get_by_id(dead.id).status == "failed"
    assert "stopped before it finished" in ImportRun.get_by_id(dead.id).message
    assert ImportRun.get_by_id(alive.id).status == "running"
    history = imp_app.test_cli_runner().invoke(args=["integrations", "history"])
    assert f"#{dead.id} " in history.output and "nothing was written" in history.output


def test_large_files_report_rows_read_while_loading(imp_app, files, imp_ctx):
    rows = [ground_row(dest=f"{n:05d}") for n in range(70_000)]
    heard = []

    def rows_read(phase, done=None, total=None, message=None):
        if phase == "importing":  # "<file>: <n> rows read (<bytes> of <size> bytes)" while a file loads
            heard.append((message.split(":")[0], done))

    path = write_ground(files / "10001.csv", rows)
    outcomes = import_paths(imp_ctx.with_progress(rows_read), "ups-ground-service", [path])
    assert outcomes[0].rows_written == 70_000
    # bytes read of the file: 0 first, then only ever more (at most 4 reports a second)
    assert heard[0] == ("10001.csv", 0) and {name for name, _ in heard} == {"10001.csv"}
    done = [n for _, n in heard]
    assert done == sorted(set(done)) and done[-1] <= path.stat().st_size


def test_cli_with_the_database_down_is_one_line_not_a_traceback(settings, tmp_path):
    from handled import create_app
    from tests.support.processes import free_port

    port = free_port()
    down = dataclasses.replace(settings, primary=dataclasses.replace(settings.primary, port=port),
                               data=dataclasses.replace(settings.data, port=port))
    runner = create_app(down).test_cli_runner()
    for args in (["integrations", "list"], ["integrations", "history"]):
        result = runner.invoke(args=args)
        assert result.exit_code == 1 and f"Cannot reach PostgreSQL at 127.0.0.1:{port}" in result.output, result.output
        assert "Traceback" not in result.output


def test_an_import_whose_connection_is_lost_fails_with_its_reason_in_one_log_line(imp_app, imp_settings, files,
                                                                                   imp_ctx, caplog):
    """bench/faults.py data-stop-import: the import failed cleanly, but was logged as a bug (the
    whole traceback) and its run said "an unexpected error" instead of why."""
    path = write_uszips(files / "uszips.csv", [uszip_row("00501")])
    blocker = connect(imp_settings.data.dbname, autocommit=False)   # the superuser: locks, ends backends
    with blocker.cursor() as cur:
        cur.execute("LOCK TABLE workspace.us_zips IN ACCESS EXCLUSIVE MODE")

    def end_the_waiting_import():
        def ended():
            with contextlib.closing(connect(imp_settings.data.dbname)) as conn, conn.cursor() as cur:
                cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                            "AND datname = current_database() AND pid <> %s", (blocker.get_backend_pid(),))
                return cur.fetchall()
        wait_until(ended, message="the import to wait for the locked table")

    ender = threading.Thread(target=end_the_waiting_import)
    ender.start()
    try:
        with pytest.raises(Exception) as raised:
            import_file(imp_ctx, "us-zips", path)
    finally:
        ender.join()
        blocker.rollback()
        blocker.close()
    assert connection_lost(raised.value), raised.value
    run = ImportRun.select().order_by(ImportRun.id.desc()).first()
    assert run.status == "failed" and "A database stopped answering during the import" in run.message, run.message
    assert "nothing was written" in run.message and table_rows("us_zips") == []
    assert "stopped: a database stopped answering" in caplog.text
    assert not [r for r in caplog.records if r.exc_info], "an outage is logged in one line, not a traceback"
