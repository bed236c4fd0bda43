"""Job pages tell the truth, with a real `flask jobs worker`, Redis and PostgreSQL: an import whose
file was rejected ends failed and lists the file's outcome and run; percentages move; Cancel (owner
yes, another user 403); a second run of a queued transformation is refused with a link; /jobs; 404."""

from __future__ import annotations

import dataclasses
import re
import threading

import pytest

from handled import create_app, jobs
from handled.context import system_context
from handled.models import ImportRun, TransformationRun
from handled.schema.names import is_scratch
from handled.transformations import service
from tests.support.accounts import csrf_token, make_user, sign_in_client
from tests.support.databases import connect
from tests.support.import_files import uszip_row, write_uszips
from tests.support.reference_data import load_delivery_sources, load_zip_sources, reference_tables
from tests.support.waiting import wait_until
from tests.support.workers import start_worker

RAW_ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")


@pytest.fixture
def app(settings, tmp_path):
    """Uploads of any size go to the job queue; this test's own upload and archive folders."""
    own = dataclasses.replace(settings, import_archive_dir=str(tmp_path / "archive"),
                              import_upload_dir=str(tmp_path / "uploads"), import_background_bytes=0)
    application = create_app(own)
    application.config.update(TESTING=True)
    return application     # no app context held open: each request has its own (and its own user)


def user(app, permissions, email):
    return sign_in_client(app, make_user(app, permissions, email=email))


def upload(client, path, **form):
    with open(path, "rb") as handle:
        response = client.post("/integrations/us-zips/import", data={"files": [(handle, path.name)], **form},
                               content_type="multipart/form-data")
    assert response.status_code == 302 and "/jobs/" in response.headers["Location"], response.headers
    return response.headers["Location"].rsplit("/", 1)[1]


def post(client, url):
    client.get("/jobs/")    # a page first, so the session has a CSRF token
    return client.post(url, data={"csrf_token": csrf_token(client)})


def uszips_with_bad_lines(path, good=200, bad=5):
    rows = [uszip_row(f"{n:05d}") for n in range(1, good + 1)]
    rows += [uszip_row(f"9{n}") for n in range(bad)]      # ZIPs of 2 digits: rejected
    return write_uszips(path, rows)


@pytest.mark.flow("A stuck job")
def test_an_import_with_bad_lines_ends_failed_and_lists_the_file_and_its_run(app, settings, tmp_path, files,
                                                                            runner):
    lead = user(app, ["run_imports"], "lead@example.test")
    job_id = upload(lead, uszips_with_bad_lines(files / "uszips.csv"))
    worker = start_worker(settings, tmp_path, "--burst")
    assert worker.wait(timeout=120) == 0
    status = jobs.job_status(job_id)
    run = ImportRun.get()
    assert (status["status"], status["label"], run.status, run.rows_rejected) == ("failed", "failed", "failed", 5)
    assert status["message"] == "uszips.csv was rejected: 5 of 205 rows were bad, so nothing was written."
    assert [(f["file_name"], f["outcome"], f["rows_rejected"], f["run_id"]) for f in status["files"]] == [
        ("uszips.csv", "rejected", 5, run.id)]
    page = lead.get(f"/jobs/{job_id}").get_data(as_text=True)
    assert 'class="state state-failed">failed<' in page and ">finished" not in page
    assert '<span id="job-percent" class="job-percent">100%</span>' in page      # the whole file was read
    assert f'href="/integrations/runs/{run.id}"' in page and "<strong>rejected</strong>" in page
    assert re.search(r'<td class="num">205</td><td class="num">0</td>\s*<td class="num">5</td>', page)
    assert "no worker is running" not in page     # the hint is for queued jobs only
    assert lead.get(f"/jobs/{job_id}.json").get_json()["status"] == "failed"
    shown = runner.invoke(args=["jobs", "status", job_id])
    assert shown.exit_code == 1 and f"{job_id} [failed]" in shown.output and "5 of 205 rows" in shown.output


def test_a_partial_import_with_rejected_rows_ends_finished_with_problems(app, settings, tmp_path, files):
    lead = user(app, ["run_imports"], "lead@example.test")
    job_id = upload(lead, uszips_with_bad_lines(files / "uszips.csv"), partial="on")
    assert start_worker(settings, tmp_path, "--burst").wait(timeout=120) == 0
    status = jobs.job_status(job_id)
    assert (status["status"], status["label"]) == ("problems", "finished with problems")
    assert status["files"][0]["outcome"] == "imported with rejected rows"
    assert status["files"][0]["rows_written"] == 200 and status["files"][0]["rows_rejected"] == 5


def test_an_import_reports_bytes_read_from_0_to_100(app, settings, tmp_path, files):
    lead = user(app, ["run_imports"], "lead@example.test")
    path = write_uszips(files / "uszips.csv", [uszip_row(f"{n:05d}", city="Holtsville" * 20)
                                               for n in range(1, 100_000)])
    job_id = upload(lead, path)
    assert jobs.job_status(job_id)["percent"] == 0
    worker = start_worker(settings, tmp_path, "--burst")
    seen = []
    while worker.poll() is None:
        status = jobs.job_status(job_id)
        if status["percent"] is not None and (not seen or seen[-1] != status["percent"]):
            seen.append(status["percent"])
    assert worker.returncode == 0
    status = jobs.job_status(job_id)
    assert status["status"] == "finished" and status["percent"] == 100, status
    assert status["files"][0]["outcome"] == "imported" and status["files"][0]["rows_written"] == 99_999
    middle = [p for p in seen if 0 < p < 100]
    assert len(middle) >= 2 and middle == sorted(middle), seen   # moved through, never back
    assert status["elapsed_seconds"] > 0


def lock_source(settings, table="workspace.usps_3d_base_service"):
    conn = connect(settings.data, autocommit=False)
    with conn.cursor() as cur:
        cur.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
    return conn


def delivery_matrix_rows(settings):
    with connect(settings.data) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM reference.delivery_matrix")
        return cur.fetchone()[0]


@pytest.mark.flow("A stuck job")
def test_cancel_by_the_owner_stops_a_rebuild_and_leaves_the_live_table(app, settings, tmp_path):
    load_zip_sources()
    load_delivery_sources()
    service.run_transformations(system_context(settings), ["delivery-matrix"])
    before = delivery_matrix_rows(settings)
    owner = user(app, ["run_transformations"], "owner@example.test")
    other = user(app, ["run_transformations"], "other@example.test")
    blocker = lock_source(settings)     # keeps the build in its insert phase
    try:
        response = post(owner, "/transformations/delivery-matrix/run")
        job_id = response.headers["Location"].rsplit("/", 1)[1]
        start_worker(settings, tmp_path)
        wait_until(lambda: jobs.job_status(job_id)["phase"] == "insert", message="the insert phase")
        page = owner.get(f"/jobs/{job_id}").get_data(as_text=True)
        assert 'id="job-cancel"' in page
        assert 'id="job-cancel"' not in other.get(f"/jobs/{job_id}").get_data(as_text=True)
        refused = post(other, f"/jobs/{job_id}/cancel")
        assert refused.status_code == 403 and "Only the user who started this job" in refused.get_data(as_text=True)
        assert jobs.job_status(job_id)["status"] == "started"
        assert post(owner, f"/jobs/{job_id}/cancel").status_code == 302
        status = wait_until(lambda: (s := jobs.job_status(job_id))["finished"] and s, message="the cancel")
    finally:
        blocker.rollback()
        blocker.close()
    assert status["status"] == "cancelled" and "Cancelled by owner@example.test" in status["message"]
    run = TransformationRun.select().where(TransformationRun.job_id == job_id).get()
    assert run.status == "cancelled" and "cancelled by owner@example.test" in run.message
    assert "left unchanged" in run.message
    # a cancel is not a failure: the page says cancelled (and who), home counts no failed run
    overview = owner.get("/transformations/").get_data(as_text=True)
    assert f"#{run.id} cancelled" in overview and f"#{run.id} failed" not in overview
    assert "cancelled by owner@example.test" in overview
    home = sign_in_client(app, make_user(app, role="admin", email="admin@example.test")).get("/").get_data(as_text=True)
    assert "<strong>0</strong>\n    failed runs not since fixed" in home, home
    assert delivery_matrix_rows(settings) == before
    wait_until(lambda: not [t for t in reference_tables() if is_scratch(t)], message="the build tables dropped")
    assert service.queued_job("delivery-matrix") is None     # the next run may start


def test_cancel_by_the_owner_rolls_back_an_import_waiting_on_a_lock(app, settings, tmp_path, files):
    lead = user(app, ["run_imports"], "lead@example.test")
    blocker = lock_source(settings, "workspace.us_zips")    # the import waits on it, inside its transaction
    try:
        job_id = upload(lead, write_uszips(files / "uszips.csv", [uszip_row(f"{n:05d}") for n in range(1, 500)]))
        start_worker(settings, tmp_path)
        wait_until(lambda: ImportRun.select().where(ImportRun.status == "running").exists(),
                   message="the import to start")
        assert post(lead, f"/jobs/{job_id}/cancel").status_code == 302
        status = wait_until(lambda: (s := jobs.job_status(job_id))["finished"] and s, message="the cancel")
    finally:
        blocker.rollback()
        blocker.close()
    assert status["status"] == "cancelled" and "Cancelled by lead@example.test" in status["message"], status
    run = ImportRun.get()
    assert run.status == "cancelled" and run.rows_written == 0
    assert run.message.startswith("Cancelled by lead@example.test") and "nothing was written" in run.message
    # the job page still lists the file, as cancelled, with a link to its run
    page = lead.get(f"/jobs/{job_id}").get_data(as_text=True)
    assert '<section id="job-files" >' in page or '<section id="job-files">' in page, page
    assert "<strong>cancelled</strong>" in page and f'/integrations/runs/{run.id}"' in page, page
    assert [f["run_id"] for f in jobs.job_status(job_id)["files"]] == [run.id]
    home = sign_in_client(app, make_user(app, role="admin", email="admin@example.test")).get("/").get_data(as_text=True)
    assert "<strong>0</strong>\n    failed runs not since fixed" in home, home
    with connect(settings.data) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM workspace.us_zips")
        assert cur.fetchone()[0] == 0


def test_a_queued_job_cancelled_never_runs(app, settings, tmp_path, files):
    lead = user(app, ["run_imports"], "lead@example.test")
    admin = sign_in_client(app, make_user(app, role="admin", email="admin@example.test"))
    job_id = upload(lead, uszips_with_bad_lines(files / "uszips.csv"))
    assert post(admin, f"/jobs/{job_id}/cancel").status_code == 302     # an admin may cancel anyone's
    status = jobs.job_status(job_id)
    assert status["status"] == "cancelled" and "before it started" in status["message"]
    assert start_worker(settings, tmp_path, "--burst").wait(timeout=60) == 0
    assert ImportRun.select().count() == 0 and jobs.job_status(job_id)["status"] == "cancelled"
    assert post(lead, f"/jobs/{job_id}/cancel").status_code == 409


def test_a_second_run_of_a_queued_transformation_is_refused_with_a_link(app, settings, runner):
    load_zip_sources()
    lead = user(app, ["run_transformations"], "lead@example.test")
    first = post(lead, "/transformations/zip3-reference/run")
    job_id = first.headers["Location"].rsplit("/", 1)[1]
    second = post(lead, "/transformations/zip3-reference/run")
    assert second.status_code == 302 and second.headers["Location"].endswith("/transformations/")
    page = lead.get("/transformations/").get_data(as_text=True)
    assert "already queued or running as job" in page and f'<a href="/jobs/{job_id}">See that job</a>' in page
    assert re.search(r'zip3-reference/run">\s*<input[^>]*>\s*<button type="submit" disabled', page)
    refused = runner.invoke(args=["transformations", "run", "zip3-reference", "--background"])
    assert refused.exit_code == 1 and job_id in refused.output, refused.output
    assert jobs.get_queue().count == 1


def test_simultaneous_requests_queue_one_job(app, settings):
    load_zip_sources()
    barrier, queued, refused = threading.Barrier(6), [], []

    def request():
        with app.app_context():
            barrier.wait()
            try:
                queued.append(service.enqueue_transformation(system_context(settings), "zip3-reference"))
            except jobs.JobAlreadyQueued as exc:
                refused.append(exc.job_id)

    threads = [threading.Thread(target=request) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(queued) == 1 and refused == queued * 5 and jobs.get_queue().count == 1


def test_an_unknown_job_is_a_404_with_a_sentence(app):
    lead = user(app, ["run_imports"], "lead@example.test")
    response = lead.get("/jobs/no-such-job")
    assert response.status_code == 404
    assert "There is no job &#39;no-such-job&#39;" in response.get_data(as_text=True)


def test_the_list_shows_the_jobs_a_user_may_see_with_readable_times(app, settings, tmp_path, files):
    load_zip_sources()
    importer = user(app, ["run_imports"], "importer@example.test")
    builder = user(app, ["run_transformations"], "builder@example.test")
    import_job = upload(importer, uszips_with_bad_lines(files / "uszips.csv"))
    build = post(builder, "/transformations/zip3-reference/run").headers["Location"].rsplit("/", 1)[1]
    assert start_worker(settings, tmp_path, "--burst").wait(timeout=120) == 0
    listing = importer.get("/jobs/").get_data(as_text=True)
    assert f"/jobs/{import_job}" in listing and f"/jobs/{build}" not in listing
    assert "importer@example.test" in listing and "failed" in listing
    assert builder.get(f"/jobs/{import_job}").status_code == 403
    page = importer.get(f"/jobs/{import_job}").get_data(as_text=True)
    for html in (listing, page):
        shown = re.sub(r'[\w-]+="[^"]*"', "", html)       # ISO only in attributes (datetime=, data-), never shown
        assert not RAW_ISO.search(shown)
        assert re.search(r'<time datetime="\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ">\d{1,2} [A-Z][a-z]{2} \d{4} '
                         r'\d\d:\d\d UTC</time>', html)
    assert re.search(r'id="job-elapsed"[^>]*>(\d+ s|under a second)<', page)


def test_a_rebuild_reports_progress_through_its_phases_and_slices(app, settings):
    """Not "insert 20%" for most of the run: the position moves with each slice inserted and
    indexed, and a plan of two builds moves through both once."""
    load_zip_sources()
    load_delivery_sources()
    heard = []
    two_slices = dataclasses.replace(settings, transform_parallelism=2)     # whatever the machine's cores
    ctx = system_context(two_slices).with_progress(lambda phase, done=None, total=None, message=None:
                                            heard.append((phase, done, total, message)))
    service.run_transformations(ctx, ["delivery-matrix"])     # zip3-reference (stale) first, then it
    points = [done for _, done, total, _ in heard if total]
    assert {total for _, _, total, _ in heard if total} == {2000}
    assert points == sorted(points) and points[0] == 0 and points[-1] == 2000
    assert 1000 in points                                      # the first build ends half way
    matrix = [(phase, done - 1000, message) for phase, done, total, message in heard
              if total and message and message.startswith("delivery-matrix")]
    inserts = [(done, message) for phase, done, message in matrix if phase == "insert"]
    assert inserts[0] == (40, "delivery-matrix: insert (0 of 2 slices) (build 2 of 2)")
    assert all(40 <= done < 600 for done, _ in inserts)          # each slice inserted moves it
    indexes = [done for phase, done, _ in matrix if phase == "index"]
    assert indexes and all(600 <= done <= 870 for done in indexes) and indexes[-1] == 870


def test_a_refused_file_is_said_once_not_failed_refused(app, settings, tmp_path, files):
    lead = user(app, ["run_imports"], "lead@example.test")
    wrong = files / "uszips.csv"
    wrong.write_text("name,colour\nfig,purple\n")       # not the uszips header: refused
    job_id = upload(lead, wrong)
    assert start_worker(settings, tmp_path, "--burst").wait(timeout=120) == 0
    status = jobs.job_status(job_id)
    run = ImportRun.get()
    assert run.status == "failed" and run.message.startswith("Refused: "), run.message
    assert status["message"].startswith("uszips.csv was refused: "), status["message"]
    assert "Refused:" not in status["message"] and "failed: " not in status["message"]
    assert status["message"].removeprefix("uszips.csv was refused: ") == run.message.removeprefix("Refused: ")
