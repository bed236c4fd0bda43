"""Integrations pages: overview, upload (inline and queued), run page, rejected rows CSV."""

import contextlib
import csv
import dataclasses
import datetime
import io
import logging
import os
import subprocess
import zipfile

import pytest

from handled import create_app
from handled.models import AuditLog, ImportRun
from tests.support.import_files import (ground_row, uszip_row, write_ground, write_uszips, write_zone_chart,
                                        zone_row)
from tests.support.imports import table_digest, table_rows


@pytest.fixture
def app(settings, tmp_path):
    """The app over settings whose archive and upload folders are this test's own."""
    own = dataclasses.replace(settings, import_archive_dir=str(tmp_path / "archive"),
                              import_upload_dir=str(tmp_path / "uploads"))
    application = create_app(own)
    application.config.update(TESTING=True)
    return application


@pytest.fixture
def importer(login_client):
    return login_client(permissions=["run_imports"])


def upload(client, integration_id, paths, **form):
    data = {"files": [(open(p, "rb"), p.name) for p in paths], **form}
    return client.post(f"/integrations/{integration_id}/import", data=data,
                       content_type="multipart/form-data")


def test_pages_need_sign_in_and_the_run_imports_permission(client, login_client):
    assert client.get("/integrations/").status_code == 302
    assert "/login" in client.get("/integrations/").headers["Location"]
    other = login_client(permissions=["view_customers"])
    assert other.get("/integrations/").status_code == 403
    assert other.post("/integrations/us-zips/import", data={}).status_code == 403


def test_overview_lists_each_integration_with_rows_and_last_import(importer, files):
    upload(importer, "us-zips", [write_uszips(files / "uszips.csv", [uszip_row("00501"), uszip_row("00502")])])
    page = importer.get("/integrations/").get_data(as_text=True)
    for name in ("us-zips", "gaz-zcta", "ups-zones", "ups-ground-service", "usps-3d-base"):
        assert name in page
    assert "workspace.us_zips" in page and ">2<" in page.replace(" ", "")
    assert "uszips.csv" in page and importer.user.email in page
    assert 'href="/integrations/"' in page  # nav link


def test_upload_one_good_file_shows_its_run(importer, files):
    response = upload(importer, "ups-ground-service", [write_ground(files / "10001.csv", [ground_row()])])
    assert response.status_code == 302 and "/integrations/runs/" in response.headers["Location"]
    page = importer.get(response.headers["Location"]).get_data(as_text=True)
    assert "succeeded" in page and "10001.csv" in page and "1 row written" in page and "1 rows" not in page
    run = ImportRun.select().first()
    assert run.created_by_id == importer.user.id and run.created_by_email == importer.user.email
    assert AuditLog.select().where(AuditLog.action == "integration.import").count() == 1
    assert table_rows("ups_ground_service_zip5") == [("10001", "00501", "NY", 1)]


def test_bad_file_run_page_lists_rejected_rows_and_csv_download(importer, files):
    upload(importer, "ups-ground-service", [write_ground(files / "10001.csv", [ground_row()])])
    before = table_digest("ups_ground_service_zip5")
    (files / "bad").mkdir()
    bad = write_ground(files / "bad" / "10001.csv",
                       [ground_row(dest="02134"), ground_row(dest="=1+2"), ground_row(dest="02135", days="x")])
    response = upload(importer, "ups-ground-service", [bad], force="on")
    page = importer.get(response.headers["Location"]).get_data(as_text=True)
    assert "failed" in page and "Nothing was written" in page
    assert "must be exactly 5 digits" in page and "is not a whole number" in page
    assert table_digest("ups_ground_service_zip5") == before
    run = ImportRun.select().order_by(ImportRun.id.desc()).first()
    download = importer.get(f"/integrations/runs/{run.id}/rejected.csv")
    assert download.mimetype == "text/csv" and "attachment" in download.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(download.get_data(as_text=True))))
    assert rows == [["line", "column", "value", "reason"],
                    ["2", "dest_zip", "'=1+2", "must be exactly 5 digits"],
                    ["3", "transit_days", "x", "is not a whole number"]]


def test_partial_checkbox_loads_the_good_rows(importer, files):
    bad = write_ground(files / "10001.csv", [ground_row(dest="02134"), ground_row(dest="0213")])
    upload(importer, "ups-ground-service", [bad], partial="on")
    run = ImportRun.select().first()
    assert run.status == "succeeded" and run.partial and run.rows_rejected == 1
    assert [r[1] for r in table_rows("ups_ground_service_zip5")] == ["02134"]


def test_many_files_and_a_zip_in_one_upload(importer, files):
    charts = [write_zone_chart(files / f"{o}.xlsx", [zone_row("004")]) for o in ("007", "010", "011")]
    bundle = files / "more.zip"
    with zipfile.ZipFile(bundle, "w") as archive:
        archive.write(charts[2], "011.xlsx")
    response = upload(importer, "ups-zones", charts[:2] + [bundle])
    assert response.headers["Location"].endswith("/integrations/ups-zones")
    assert sorted(r.file_name for r in ImportRun.select()) == ["007.xlsx", "010.xlsx", "011.xlsx"]
    page = importer.get("/integrations/ups-zones").get_data(as_text=True)
    assert page.count("succeeded") >= 3 and "011.xlsx" in page


def test_upload_without_files_or_without_csrf_is_refused(importer, app):
    response = importer.post("/integrations/us-zips/import", data={}, content_type="multipart/form-data")
    assert response.status_code == 302
    assert "Choose one or more files" in importer.get("/integrations/us-zips").get_data(as_text=True)
    importer.send_csrf = False
    refused = importer.post("/integrations/us-zips/import", data={}, content_type="multipart/form-data")
    assert refused.status_code == 400


def test_unknown_integration_and_run_are_404(importer):
    assert importer.get("/integrations/nope").status_code == 404
    assert importer.get("/integrations/runs/999").status_code == 404


def test_large_uploads_are_queued_and_the_job_runs_the_same_service(app, importer, files, settings):
    from handled import jobs

    app.config["HANDLED_SETTINGS"] = dataclasses.replace(app.config["HANDLED_SETTINGS"], import_background_bytes=10)
    path = write_uszips(files / "uszips.csv", [uszip_row("00501")])
    response = upload(importer, "us-zips", [path])
    assert "/jobs/" in response.headers["Location"]  # the job queue's live page
    assert "runs in the background (job" in importer.get(response.headers["Location"]).get_data(as_text=True)
    with app.app_context():
        queued = jobs.get_queue().jobs
        assert len(queued) == 1 and queued[0].meta["kind"] == "import"
        assert queued[0].meta["result_url"] == "/integrations/us-zips"
        assert ImportRun.select().count() == 0
        result = queued[0].perform()
    assert result["statuses"] == {"uszips.csv": "succeeded"}
    run = ImportRun.get_by_id(result["runs"][0])
    assert run.created_by_email == importer.user.email and table_rows("us_zips")[0][0] == "00501"
    assert not any((files.parent / "uploads").iterdir())  # the upload folder was cleaned up


@pytest.mark.one_mode   # page rendering only
@pytest.mark.parametrize("upload_mb,file_bytes,shown", [
    (128, 1 << 30, "at most 128 MB in all per upload, 128 MB per file;"),     # the upload caps each file
    (128, 48 << 20, "at most 128 MB in all per upload, 48 MB per file;"),
    (2048, 3 << 19, "at most 2,048 MB in all per upload, 1.5 MB per file;")])
def test_the_upload_form_shows_both_limits_in_mb_and_never_a_file_over_the_upload(app, importer, upload_mb,
                                                                                file_bytes, shown):
    app.config["HANDLED_SETTINGS"] = dataclasses.replace(app.config["HANDLED_SETTINGS"], max_upload_mb=upload_mb,
                                                         import_max_bytes=file_bytes)
    page = importer.get("/integrations/us-zips").get_data(as_text=True)
    assert shown in " ".join(page.split()), page
    assert "bytes per file" not in page


def test_an_upload_over_the_size_limit_is_refused(app, importer, files):
    app.config["HANDLED_SETTINGS"] = dataclasses.replace(app.config["HANDLED_SETTINGS"], max_upload_mb=1)
    path = write_uszips(files / "uszips.csv", [uszip_row(f"{n:05d}") for n in range(8000)])
    assert path.stat().st_size > 1 << 20
    response = upload(importer, "us-zips", [path])
    assert response.status_code == 413 and "MAX_UPLOAD_MB" in response.get_data(as_text=True)
    assert ImportRun.select().count() == 0 and table_rows("us_zips") == []


class Recorder(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


def test_large_upload_with_redis_down_is_refused_cleanly(settings, tmp_path, files):
    from tests.support.accounts import make_user, sign_in_client
    from tests.support.servers import PrivateRedis

    private = PrivateRedis(tmp_path / "redis").start()
    try:
        own = dataclasses.replace(settings, redis_url=private.url, import_background_bytes=10,
                                  import_archive_dir=str(tmp_path / "archive"),
                                  import_upload_dir=str(tmp_path / "uploads"))
        application = create_app(own)
        application.config.update(TESTING=True)
        client = sign_in_client(application, make_user(application, ["run_imports"]))
        private.stop()
        logged = Recorder()
        logging.getLogger("handled").addHandler(logged)
        try:
            response = upload(client, "us-zips", [write_uszips(files / "uszips.csv", [uszip_row("00501")])])
        finally:
            logging.getLogger("handled").removeHandler(logged)
        assert response.status_code == 302
        page = client.get(response.headers["Location"]).get_data(as_text=True)
        assert "The job queue (Redis) is not answering" in page
        # one line for the operator, no traceback (docs/OPS_RUNBOOK.md "Faults under load")
        lines = [r.getMessage() for r in logged.records if "import" in r.getMessage()]
        assert [line.split(" (")[0] for line in lines] == ["could not queue an import of us-zips: the job queue"]
        assert all(r.exc_info is None for r in logged.records)
        with application.app_context():
            assert ImportRun.select().count() == 0 and table_rows("us_zips") == []
        assert not any((tmp_path / "uploads").iterdir())
    finally:
        private.stop()


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_an_upload_onto_a_full_disk_is_refused_with_a_sentence(settings, tmp_path, files):
    """The upload folder on a full filesystem (a 1 MiB tmpfs, filled): the page says the upload
    folder is full, nothing is imported, and no half-written upload is left (bench/faults.py
    disk-full-upload answered 500 here)."""
    from tests.support.accounts import make_user, sign_in_client

    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], check=True)
    try:
        own = dataclasses.replace(settings, import_archive_dir=str(tmp_path / "archive"),
                                  import_upload_dir=str(disk / "uploads"))
        application = create_app(own)
        application.config.update(TESTING=True)
        client = sign_in_client(application, make_user(application, ["run_imports"]))
        (disk / "uploads").mkdir()
        with open(disk / "filler", "wb") as handle, contextlib.suppress(OSError):
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        path = write_uszips(files / "uszips.csv", [uszip_row(f"{n:05d}") for n in range(2000)])
        response = upload(client, "us-zips", [path])
        assert response.status_code == 302, response.status_code
        page = client.get(response.headers["Location"]).get_data(as_text=True)
        assert "could not be stored in the upload folder (IMPORT_UPLOAD_DIR): it is full" in page
        with application.app_context():
            assert ImportRun.select().count() == 0 and table_rows("us_zips") == []
        assert not any((disk / "uploads").iterdir())
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_run_faster_than_a_tenth_of_a_second_says_so(importer, files):
    response = upload(importer, "ups-ground-service", [write_ground(files / "10001.csv", [ground_row()])])
    run = ImportRun.select().first()
    ImportRun.update(finished_at=run.started_at + datetime.timedelta(milliseconds=30)).where(
        ImportRun.id == run.id).execute()
    page = importer.get(response.headers["Location"]).get_data(as_text=True)
    assert '<th scope="row">Took</th><td>under 0.1 s</td>' in page and "0.0 s" not in page
    ImportRun.update(finished_at=run.started_at + datetime.timedelta(seconds=4.25)).where(
        ImportRun.id == run.id).execute()
    assert '<th scope="row">Took</th><td>4.2 s</td>' in importer.get(response.headers["Location"]).get_data(as_text=True)
