"""File names and what they prove: browser-renamed downloads, .zip members no integration reads,
content imported before under another origin's name, duplicates judged by what the table holds
now, and the import options named as each channel offers them (flags on the CLI, boxes on the web)."""

from __future__ import annotations

import dataclasses
import re
import shutil
import zipfile

import pytest

from handled import create_app, jobs
from handled.context import Actor
from handled.db import data_db
from handled.integrations.names import browser_original
from handled.integrations.options import FORCE_LABEL, PARTIAL_LABEL
from handled.integrations.service import import_file, import_paths
from handled.models import ImportRun
from tests.support.import_files import (USPS_NAME, gaz_row, ground_row, usps_row, uszip_row, write_gaz,
                                        write_ground, write_usps, write_uszips, write_zone_chart, zone_row)
from tests.support.accounts import make_user, sign_in_client
from tests.support.imports import assert_refused, seed_import, table_digest, table_rows
from tests.support.workers import start_worker


@pytest.fixture
def seeded(imp_ctx, files):
    """Good files of every integration the refusals below try, imported first: each refusal must
    leave those rows exactly as they were."""
    folder = files / "seed"
    folder.mkdir()
    seed_import(imp_ctx, "us-zips", write_uszips(folder / "uszips.csv", [uszip_row("02134")]))
    seed_import(imp_ctx, "ups-zones", write_zone_chart(folder / "011.xlsx", [zone_row("004")]))
    seed_import(imp_ctx, "ups-ground-service", write_ground(folder / "10003.csv", [ground_row("10003", "00501")]))


def web(ctx):
    """The same operator as seen through the pages (channel web)."""
    return ctx.with_actor(Actor(id=None, email="lead@example.test", channel="web"))


def upload(client, integration_id, paths, **form):
    data = {"files": [(open(p, "rb"), p.name) for p in paths], **form}
    return client.post(f"/integrations/{integration_id}/import", data=data, content_type="multipart/form-data")


def ticked(page: str, box: str) -> bool:
    match = re.search(rf'<input type="checkbox" name="{box}"( checked)?>', page)
    assert match, f"no {box} box on the page"
    return bool(match.group(1))


@pytest.fixture
def app(imp_app):
    """The signed-in clients' app is the one over this test's own archive and upload folders."""
    return imp_app


@pytest.fixture
def importer(login_client):
    return login_client(permissions=["run_imports"])


# ---- browser-renamed downloads --------------------------------------------------------------------------------

@pytest.mark.parametrize("name,original", [
    ("uszips (1).csv", "uszips.csv"), ("uszips(2).csv", "uszips.csv"), ("10001 (1).csv", "10001.csv"),
    ("007 (3).xlsx", "007.xlsx"), ("uszips (1) (1).csv", "uszips.csv"), ("uszips.csv", None),
    ("uszips 1.csv", None), ("(1).csv", None)])
def test_a_browser_copy_name_is_read_back_to_the_name_it_was_saved_from(name, original):
    assert browser_original(name) == original


def write_renamed(kind, files, name):
    """A good file of ``kind`` under ``name`` (the rows carry the origin the stripped name gives)."""
    path = files / name
    if kind == "us-zips":
        return write_uszips(path, [uszip_row("00501"), uszip_row("00502")])
    if kind == "gaz-zcta":
        return write_gaz(path, [gaz_row("00601"), gaz_row("00602")])
    if kind == "usps-3d-base":
        return write_usps(path, [usps_row("005", "006"), usps_row("005", "007")])
    if kind == "ups-ground-service":
        return write_ground(path, [ground_row("10001", "00501"), ground_row("10001", "00502")])
    return write_zone_chart(path, [zone_row("004"), zone_row("005")])


RENAMED = [("us-zips", "uszips (1).csv", "us_zips", None), ("us-zips", "uszips(2).csv", "us_zips", None),
           ("gaz-zcta", "2020_Gaz_zcta_national (1).txt", "gaz_zcta_national", None),
           ("usps-3d-base", USPS_NAME.replace(".csv", " (1).csv"), "usps_3d_base_service", None),
           ("ups-ground-service", "10001 (1).csv", "ups_ground_service_zip5", "10001"),
           ("ups-ground-service", "10001_Outbound(4).csv", "ups_ground_service_zip5", "10001"),
           ("ups-zones", "007 (3).xlsx", "ups_zones", "007"), ("ups-zones", "007 (1).xls", "ups_zones", "007")]


@pytest.mark.parametrize("integration_id,name,target,origin", RENAMED, ids=[r[1] for r in RENAMED])
def test_a_browser_renamed_download_whose_content_proves_it_is_imported(imp_ctx, files, integration_id, name,
                                                                        target, origin):
    outcome = import_file(imp_ctx, integration_id, write_renamed(integration_id, files, name))
    assert (outcome.status, outcome.rows_written) == ("succeeded", 2), outcome.message
    run = ImportRun.get_by_id(outcome.run_id)
    assert run.file_name == name                       # the history keeps the name it came with
    assert "judged as" in run.message and "browser's copy number" in run.message
    rows = table_rows(target)
    assert len(rows) == 2
    if origin is not None:                             # the origin comes from the name without " (N)"
        assert {row[0] for row in rows} == {origin}


NOT_PROVEN = [
    ("us-zips", "uszips (1).csv", "us_zips",
     lambda p: write_uszips(p, [uszip_row("00501")], header=["zip", "lat", "lng"]),
     "'uszips (1).csv' is a browser's copy of the name uszips.csv, but its header does not match that file: "
     "expected zip, lat, lng, city,"),
    # Gazetteer rows under a renamed uszips name: the header is blamed, naming both headers
    ("us-zips", "uszips (2).csv", "us_zips", lambda p: write_gaz(p, [gaz_row("00601")]),
     "'uszips (2).csv' is a browser's copy of the name uszips.csv, but its header does not match that file: "
     "expected zip, lat, lng, city, state_id"),
    ("us-zips", "uszips(2).csv", "us_zips", lambda p: p.write_bytes(b"\x00\x01binary"),
     "'uszips(2).csv' is not a SimpleMaps US ZIP database file name; expected uszips.csv."),
    ("ups-zones", "007 (3).xlsx", "ups_zones", lambda p: p.write_text("Dest. ZIP,Ground\n004,002\n"),
     "'007 (3).xlsx' is not a UPS zone charts file name; expected NNN.xls or NNN.xlsx, named for the origin ZIP3."),
    ("ups-zones", "007 (3).xlsx", "ups_zones",
     lambda p: write_zone_chart(p, [zone_row("004")], title_rows=3),
     "'007 (3).xlsx' is not a UPS zone charts file name"),
    ("ups-ground-service", "10001 (1).csv", "ups_ground_service_zip5",
     lambda p: write_uszips(p, [uszip_row("00501")]),
     "'10001 (1).csv' is not a UPS ground transit times file name; expected NNNNN.csv or NNNNN_Outbound.csv"),
]


@pytest.mark.parametrize("integration_id,name,target,write,message", NOT_PROVEN,
                         ids=[f"{n[1]}-{i}" for i, n in enumerate(NOT_PROVEN)])
@pytest.mark.one_mode   # refused before anything is written: the same in both modes
def test_a_renamed_file_whose_content_does_not_prove_it_gets_the_name_refusal(imp_ctx, files, seeded, integration_id,
                                                                             name, target, write, message):
    write(files / name)
    run = assert_refused(imp_ctx, integration_id, files / name, target, message=message)
    assert run.message.startswith("Refused: ") and run.message.endswith(" Nothing was written.")


def test_a_renamed_file_with_the_right_header_but_bad_rows_names_the_rows(imp_ctx, files, seeded):
    path = write_uszips(files / "uszips (1).csv", [uszip_row("00501"), uszip_row("0050")])
    assert_refused(imp_ctx, "us-zips", path, "us_zips", rejected=[(3, "zip")])


def test_names_that_are_not_browser_copies_are_refused_as_today(imp_ctx, files, seeded):
    for name in ("uszips-2.csv", "uszips 2.csv", "my uszips (1).csv"):
        path = write_uszips(files / name, [uszip_row("00501")])
        assert_refused(imp_ctx, "us-zips", path, "us_zips",
                       message=f"{name!r} is not a SimpleMaps US ZIP database file name; expected uszips.csv.")


def test_the_upload_page_accepts_a_renamed_download(importer, files):
    response = upload(importer, "ups-zones", [write_zone_chart(files / "007 (3).xlsx", [zone_row("004")])])
    page = importer.get(response.headers["Location"]).get_data(as_text=True)
    assert "succeeded" in page and "007 (3).xlsx" in page and "judged as 007.xlsx" in page
    assert table_rows("ups_zones")[0][:2] == ("007", "004")


# ---- .zip members no integration reads --------------------------------------------------------------------------

def bundle_with_extras(files, *members):
    bundle = files / "charts.zip"
    with zipfile.ZipFile(bundle, "w") as archive:
        for path, inside in members:
            archive.write(path, inside)
        archive.writestr("zones/license.txt", "Data (c) UPS\n")
        archive.writestr("readme.pdf", b"%PDF-1.4 not really")
        archive.writestr("__MACOSX/zones/._007.xlsx", b"\x00\x05\x16\x07junk")
        archive.writestr("zones/", b"")
    return bundle


def test_zip_members_no_integration_reads_are_listed_as_ignored_without_a_run(imp_ctx, files):
    chart = write_zone_chart(files / "007.xlsx", [zone_row("004"), zone_row("005")])
    outcomes = import_paths(imp_ctx, "ups-zones", [bundle_with_extras(files, (chart, "zones/007.xlsx"))])
    assert [(o.file_name, o.status, o.outcome) for o in outcomes] == [
        ("__MACOSX/zones/._007.xlsx", "ignored", "ignored"), ("readme.pdf", "ignored", "ignored"),
        ("007.xlsx", "succeeded", "imported"), ("zones/license.txt", "ignored", "ignored")]
    ignored = [o for o in outcomes if o.status == "ignored"]
    assert all(o.run_id is None and o.clean for o in ignored)
    assert "Ignored: no integration reads readme.pdf (in charts.zip)" in ignored[1].message
    assert [(r.file_name, r.status) for r in ImportRun.select()] == [("007.xlsx", "succeeded")]
    assert len(table_rows("ups_zones")) == 2


def test_a_browser_renamed_zip_member_is_read_not_ignored(imp_ctx, files):
    ground = write_ground(files / "10001.csv", [ground_row()])
    bundle = files / "ground.zip"
    with zipfile.ZipFile(bundle, "w") as archive:
        archive.write(ground, "downloads/10001 (1).csv")
    [outcome] = import_paths(imp_ctx, "ups-ground-service", [bundle])
    assert (outcome.file_name, outcome.status, outcome.rows_written) == ("10001 (1).csv", "succeeded", 1)


def test_a_zip_member_another_integration_reads_is_refused_not_ignored(imp_ctx, files):
    ground = write_ground(files / "10001.csv", [ground_row()])
    chart = write_zone_chart(files / "007.xlsx", [zone_row("004")])
    bundle = files / "mixed.zip"
    with zipfile.ZipFile(bundle, "w") as archive:
        archive.write(chart, "007.xlsx")
        archive.write(ground, "10001.csv")
    outcomes = import_paths(imp_ctx, "ups-zones", [bundle])
    assert [(o.file_name, o.status) for o in outcomes] == [("007.xlsx", "succeeded"), ("10001.csv", "failed")]
    assert "'10001.csv' is not a UPS zone charts file name" in outcomes[1].message


def test_a_zip_with_nothing_an_integration_reads_is_one_failed_run(imp_ctx, files):
    bundle = files / "docs.zip"
    with zipfile.ZipFile(bundle, "w") as archive:
        archive.writestr("license.txt", "text")
        archive.writestr("readme.pdf", b"%PDF")
    [outcome] = import_paths(imp_ctx, "us-zips", [bundle])
    assert (outcome.file_name, outcome.status) == ("docs.zip", "failed")
    assert "docs.zip holds no file that an integration reads (only license.txt, readme.pdf)" in outcome.message


def test_the_cli_lists_ignored_members_and_exits_zero(imp_app, files):
    chart = write_zone_chart(files / "007.xlsx", [zone_row("004")])
    bundle = bundle_with_extras(files, (chart, "007.xlsx"))
    result = imp_app.test_cli_runner().invoke(args=["integrations", "import", "ups-zones", str(bundle)])
    assert result.exit_code == 0, result.output
    assert "zones/license.txt: ignored. Ignored: no integration reads zones/license.txt (in charts.zip)" in result.output
    assert "readme.pdf: ignored." in result.output and "007.xlsx: succeeded (run " in result.output
    assert "4 files: 3 ignored, 1 succeeded" in result.output


def test_the_upload_page_lists_ignored_members_and_shows_the_run(importer, files):
    chart = write_zone_chart(files / "007.xlsx", [zone_row("004")])
    response = upload(importer, "ups-zones", [bundle_with_extras(files, (chart, "007.xlsx"))])
    run = ImportRun.get()
    assert response.headers["Location"].endswith(f"/integrations/runs/{run.id}")
    page = importer.get(response.headers["Location"]).get_data(as_text=True)
    assert "zones/license.txt: ignored. Ignored: no integration reads zones/license.txt" in page
    assert "readme.pdf: ignored." in page and "succeeded" in page


def test_a_queued_upload_lists_ignored_members_and_names_the_box_not_the_flag(imp_settings, tmp_path, files):
    queued = dataclasses.replace(imp_settings, import_background_bytes=0)     # every upload goes to a job
    application = create_app(queued)
    application.config.update(TESTING=True)
    lead = sign_in_client(application, make_user(application, ["run_imports"], email="lead@example.test"))
    chart = write_zone_chart(files / "007.xlsx", [zone_row("004"), zone_row("04")])
    bundle = files / "charts.zip"
    with zipfile.ZipFile(bundle, "w") as archive:
        archive.write(chart, "007.xlsx")
        archive.writestr("license.txt", "Data (c) UPS\n")
    response = upload(lead, "ups-zones", [bundle])
    assert "/jobs/" in response.headers["Location"]
    job_id = response.headers["Location"].rsplit("/", 1)[1]
    assert start_worker(queued, tmp_path, "--burst").wait(timeout=120) == 0
    status = jobs.job_status(job_id)
    run = ImportRun.get()
    assert status["status"] == "failed" and status["message"] == "2 files: 1 rejected, 1 ignored."
    assert [(f["file_name"], f["outcome"], f["run_id"]) for f in status["files"]] == [
        ("007.xlsx", "rejected", run.id), ("license.txt", "ignored", None)]
    rejected = status["files"][0]["message"]
    assert f'"{PARTIAL_LABEL}" ticked' in rejected and "--partial" not in rejected
    page = lead.get(f"/jobs/{job_id}").get_data(as_text=True)
    assert "<strong>ignored</strong>" in page and "no run" in page and f'href="/integrations/runs/{run.id}"' in page
    assert "--partial" not in page and "--force" not in page
    run_page = lead.get(f"/integrations/runs/{run.id}").get_data(as_text=True)
    assert ticked(run_page, "partial")


# ---- the same content under another origin's name ---------------------------------------------------------------

def test_the_same_bytes_under_another_origin_are_refused_naming_the_earlier_run(imp_ctx, files):
    first = import_file(imp_ctx, "ups-ground-service", write_ground(files / "10001.csv", [ground_row()]))
    before = table_digest("ups_ground_service_zip5")
    copy = files / "10002.csv"
    shutil.copyfile(files / "10001.csv", copy)
    for force in (False, True):                     # "import again" cannot make 10001's rows 10002's
        outcome = import_file(imp_ctx, "ups-ground-service", copy, force=force)
        assert outcome.status == "failed", outcome
        assert (f"Refused: 10002.csv has the same content (sha256 {ImportRun.get_by_id(first.run_id).file_sha256[:12]}…)"
                f" as 10001.csv, imported for origin 10001 in run {first.run_id}: its rows are for origin 10001, "
                "not for origin 10002 as its name says. Nothing was written.") == outcome.message
    assert table_digest("ups_ground_service_zip5") == before


def test_a_zone_chart_copied_to_another_origin_is_refused(imp_ctx, files):
    first = seed_import(imp_ctx, "ups-zones", write_zone_chart(files / "007.xlsx", [zone_row("004")]))
    shutil.copyfile(files / "007.xlsx", files / "010.xlsx")   # zone charts carry their origin only in the name
    run = assert_refused(imp_ctx, "ups-zones", files / "010.xlsx", "ups_zones",
                         message=f"as 007.xlsx, imported for origin 007 in run {first.run_id}")
    assert "not for origin 010 as its name says" in run.message
    assert {r[0] for r in table_rows("ups_zones")} == {"007"}


def test_a_renamed_copy_of_the_same_origin_is_a_duplicate_not_a_conflict(imp_ctx, files):
    first = import_file(imp_ctx, "ups-zones", write_zone_chart(files / "007.xlsx", [zone_row("004")]))
    shutil.copyfile(files / "007.xlsx", files / "007 (1).xlsx")
    again = import_file(imp_ctx, "ups-zones", files / "007 (1).xlsx")
    assert again.status == "skipped" and f"run {first.run_id} (007.xlsx)" in again.message


def test_rows_of_another_origin_refuse_the_file_as_misnamed(imp_ctx, files, seeded):
    path = write_ground(files / "10002.csv", [ground_row("10001", "00501"), ground_row("10001", "00502")])
    run = assert_refused(imp_ctx, "ups-ground-service", path, "ups_ground_service_zip5")
    assert run.message == ("Refused: 10002.csv holds rows for origin 10001 (line 1), not for origin 10002 as its "
                           "name says. Nothing was written.")
    assert run.rows_rejected == 0


def test_the_cli_refuses_a_copy_under_another_origin_with_exit_1(imp_app, files):
    runner = imp_app.test_cli_runner()
    write_ground(files / "10001.csv", [ground_row()])
    assert runner.invoke(args=["integrations", "import", "ups-ground-service", str(files / "10001.csv")]).exit_code == 0
    shutil.copyfile(files / "10001.csv", files / "10002.csv")
    result = runner.invoke(args=["integrations", "import", "ups-ground-service", str(files / "10002.csv")])
    assert result.exit_code == 1
    assert "10002.csv: failed (run " in result.output and "as 10001.csv, imported for origin 10001" in result.output
    assert "Traceback" not in result.output


# ---- duplicates: what the table holds now -----------------------------------------------------------------------

REPLACE = [("us-zips", "uszips.csv", "us_zips", lambda p, z: write_uszips(p, [uszip_row(z)])),
           ("gaz-zcta", "2020_Gaz_zcta_national.txt", "gaz_zcta_national", lambda p, z: write_gaz(p, [gaz_row(z)])),
           ("usps-3d-base", USPS_NAME, "usps_3d_base_service", lambda p, z: write_usps(p, [usps_row(z[:3], "006")]))]


@pytest.mark.parametrize("integration_id,name,target,write", REPLACE, ids=[r[0] for r in REPLACE])
def test_replace_mode_reimports_an_older_file_after_a_newer_one_replaced_it(imp_ctx, files, integration_id, name,
                                                                           target, write):
    (files / "old").mkdir()
    (files / "new").mkdir()
    old, new = write(files / "old" / name, "00501"), write(files / "new" / name, "11111")
    assert import_file(imp_ctx, integration_id, old).status == "succeeded"
    holding_old = table_digest(target)
    assert import_file(imp_ctx, integration_id, new).status == "succeeded"
    again = import_file(imp_ctx, integration_id, old)        # the table holds the new file's rows now
    assert again.status == "succeeded" and "Skipped" not in again.message
    assert table_digest(target) == holding_old
    assert import_file(imp_ctx, integration_id, old).status == "skipped"   # now it is what the table holds


def test_replace_mode_reimports_into_a_table_emptied_since(imp_ctx, files):
    path = write_uszips(files / "uszips.csv", [uszip_row("00501")])
    assert import_file(imp_ctx, "us-zips", path).status == "succeeded"
    with data_db.connection().cursor() as cur:
        cur.execute("TRUNCATE workspace.us_zips")   # e.g. a DATA database rebuilt without its imports
    assert import_file(imp_ctx, "us-zips", path).status == "succeeded"
    assert len(table_rows("us_zips")) == 1


def test_a_failed_newer_file_does_not_make_the_older_one_new_again(imp_ctx, files):
    (files / "bad").mkdir()
    good = write_uszips(files / "uszips.csv", [uszip_row("00501")])
    import_file(imp_ctx, "us-zips", good)
    assert import_file(imp_ctx, "us-zips", write_uszips(files / "bad" / "uszips.csv", [uszip_row("0050")])).status == "failed"
    assert import_file(imp_ctx, "us-zips", good).status == "skipped"


def test_upsert_by_origin_reimports_a_file_after_a_newer_one_of_the_same_origin(imp_ctx, files):
    for folder in ("v1", "v2"):
        (files / folder).mkdir()
    v1 = write_ground(files / "v1" / "10001.csv", [ground_row(days="1")])
    v2 = write_ground(files / "v2" / "10001.csv", [ground_row(days="4")])
    other = write_ground(files / "10002.csv", [ground_row("10002", days="2")])
    import_file(imp_ctx, "ups-ground-service", v1)
    import_file(imp_ctx, "ups-ground-service", other)
    assert import_file(imp_ctx, "ups-ground-service", v1).status == "skipped"     # another origin changed nothing
    import_file(imp_ctx, "ups-ground-service", v2)
    assert import_file(imp_ctx, "ups-ground-service", v1).status == "succeeded"
    assert table_rows("ups_ground_service_zip5") == [("10001", "00501", "NY", 1), ("10002", "00501", "NY", 2)]


# ---- the options, named as each channel offers them -------------------------------------------------------------

def bad_uszips(files):
    return write_uszips(files / "uszips.csv", [uszip_row("00501"), uszip_row("0050")])


def test_the_cli_channel_names_the_flags(imp_ctx, files):
    refused = import_file(imp_ctx, "us-zips", bad_uszips(files))
    assert refused.message.endswith("Fix the file, or import it with --partial to load the good rows.")
    good = write_uszips(files / "good.csv", [uszip_row("00501")])
    import_file(imp_ctx, "us-zips", good, file_name="uszips.csv")
    skipped = import_file(imp_ctx, "us-zips", good, file_name="uszips.csv")
    assert skipped.message.endswith("Use --force to import it again.")


@pytest.mark.parametrize("channel", ["web", "job"])
def test_the_web_and_job_channels_name_the_upload_forms_boxes(imp_ctx, files, channel):
    ctx = imp_ctx.with_actor(Actor(id=None, email="lead@example.test", channel=channel))
    refused = import_file(ctx, "us-zips", bad_uszips(files))
    assert f'"{PARTIAL_LABEL}" ticked' in refused.message and "--" not in refused.message
    good = write_uszips(files / "good.csv", [uszip_row("00501")])
    import_file(ctx, "us-zips", good, file_name="uszips.csv")
    skipped = import_file(ctx, "us-zips", good, file_name="uszips.csv")
    assert f'"{FORCE_LABEL}" ticked' in skipped.message and "--" not in skipped.message


def test_the_history_keeps_the_sentence_and_no_channels_words(imp_ctx, files):
    outcome = import_file(imp_ctx, "us-zips", bad_uszips(files))
    stored = ImportRun.get_by_id(outcome.run_id).message
    assert stored.startswith("Nothing was written: 1 of 2 rows were rejected (first on line 3, zip:")
    assert "--partial" not in stored and PARTIAL_LABEL not in stored


def test_a_refused_upload_says_tick_the_box_and_its_run_page_has_it_ticked(importer, files):
    response = upload(importer, "us-zips", [bad_uszips(files)])
    page = importer.get(response.headers["Location"]).get_data(as_text=True)
    assert "--partial" not in page and "--force" not in page
    assert f"Fix the file, or import it again with &#34;{PARTIAL_LABEL}&#34; ticked" in page    # the flash
    assert f"> {PARTIAL_LABEL}" in page                                                      # the box's label
    assert ticked(page, "partial") and not ticked(page, "force")
    again = upload(importer, "us-zips", [bad_uszips(files)], partial="on")                    # what the page offers
    assert ImportRun.get_by_id(int(again.headers["Location"].rsplit("/", 1)[1])).status == "succeeded"
    assert [r[0] for r in table_rows("us_zips")] == ["00501"]


def test_a_skipped_upload_says_tick_the_box_and_its_run_page_has_it_ticked(importer, files):
    path = write_uszips(files / "uszips.csv", [uszip_row("00501")])
    upload(importer, "us-zips", [path])
    response = upload(importer, "us-zips", [path])
    page = importer.get(response.headers["Location"]).get_data(as_text=True)
    assert "skipped" in page and "--force" not in page and "--partial" not in page
    assert f"To import it again, choose it again with &#34;{FORCE_LABEL}&#34; ticked" in page
    assert ticked(page, "force") and not ticked(page, "partial")
    forced = upload(importer, "us-zips", [path], force="on")
    assert ImportRun.get_by_id(int(forced.headers["Location"].rsplit("/", 1)[1])).status == "succeeded"


def test_the_run_page_of_a_cli_run_shows_no_flag(imp_ctx, importer, files):
    outcome = import_file(imp_ctx, "us-zips", bad_uszips(files))
    assert "--partial" in outcome.message                           # the CLI was told its flag...
    page = importer.get(f"/integrations/runs/{outcome.run_id}").get_data(as_text=True)
    assert "--partial" not in page and ticked(page, "partial")     # ...the page offers its box


def test_runs_nothing_could_help_offer_no_form(importer, imp_ctx, files):
    good = import_file(imp_ctx, "us-zips", write_uszips(files / "uszips.csv", [uszip_row("00501")]))
    refused = import_file(imp_ctx, "us-zips", write_uszips(files / "wrong.csv", [uszip_row("00501")]))
    for run_id in (good.run_id, refused.run_id):
        page = importer.get(f"/integrations/runs/{run_id}").get_data(as_text=True)
        assert 'id="import-again"' not in page and 'id="upload-form"' not in page
    assert 'id="upload-form"' in importer.get("/integrations/us-zips").get_data(as_text=True)
