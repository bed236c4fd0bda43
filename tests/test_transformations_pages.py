"""Pages: transformations (Run → job page), job JSON, coverage view, exports with 304s (both modes)."""

from __future__ import annotations

import re

import pytest

from handled import heartbeat, jobs
from handled.models import Facility
from handled.transformations import history
from handled.context import system_context
from handled.transformations.service import run_transformations
from tests.support.reference_data import build_reference_tables


@pytest.fixture
def built(app, settings):
    build_reference_tables(settings)


def test_pages_need_sign_in_and_their_permission(app, client, login_client):
    for url in ("/transformations/", "/coverage/", "/exports/", "/exports/zone-matrix.json"):
        assert client.get(url).status_code == 302
    nobody = login_client(permissions=[])
    for url in ("/transformations/", "/coverage/", "/exports/", "/exports/zone-matrix.json"):
        assert nobody.get(url).status_code == 403
    assert nobody.post("/transformations/delivery-matrix/run").status_code == 403


def test_transformations_page_and_run_button_queue_a_job(built, login_client):
    staff = login_client(permissions=["run_transformations"])
    page = staff.get("/transformations/").get_data(as_text=True)
    assert "delivery-matrix" in page and "up to date" in page and ">19<" in page
    # recent runs list each run's phase timings in the order the phases happen
    assert re.search(r"prepare [0-9.]+, insert [0-9.]+, index [0-9.]+, check [0-9.]+, swap [0-9.]+<", page)
    response = staff.post("/transformations/delivery-matrix/run")
    assert response.status_code == 302 and "/jobs/" in response.location
    job_id = response.location.rsplit("/", 1)[1]
    assert "Run transformation delivery-matrix" in staff.get(f"/jobs/{job_id}").get_data(as_text=True)
    status = staff.get(f"/jobs/{job_id}.json").get_json()
    assert status["status"] == "queued" and status["kind"] == "transformation"
    other = login_client(permissions=["download_exports"])
    assert other.get(f"/jobs/{job_id}.json").status_code == 403
    assert staff.get("/jobs/unknown-job").status_code == 404
    jobs.get_queue().empty()


def test_run_button_says_which_run_is_going(built, login_client):
    staff = login_client(permissions=["run_transformations"])
    with heartbeat.Heartbeat():
        going = history.start_run("delivery-matrix", user_email="lead@example.test")
        response = staff.post("/transformations/delivery-matrix/run", follow_redirects=True)
    assert f"run #{going.id}" in response.get_data(as_text=True)
    history.finish_run(going.id, "failed", message="test over")


def test_coverage_shows_days_and_scores_of_the_facility_origin(built, login_client):
    facility = Facility.create(code="EWR1", name="Newark", zip="10001", timezone="America/New_York")
    Facility.create(code="NOPE", name="Nowhere", zip="99999", timezone="America/New_York")
    viewer = login_client(permissions=["view_customers"])
    page = viewer.get(f"/coverage/?facility={facility.id}").get_data(as_text=True)
    assert "origin ZIP3 100" in page
    assert '<td class="s0">5</td>' in page       # UPS GND to 400 (zone 045)
    assert '<td class="s95">2</td>' in page
    assert '<span class="carrier">USPS</span>PFC</a></th>' in page and '<th scope="row">600</th>' in page
    other = Facility.get(Facility.code == "NOPE")
    assert "has no rows for origin 999" in viewer.get(f"/coverage/?facility={other.id}").get_data(as_text=True)


def test_exports_download_streams_and_answers_304_when_unchanged(built, login_client, settings):
    user = login_client(permissions=["download_exports"])
    assert "zone-matrix-ups.json" in user.get("/exports/").get_data(as_text=True)
    response = user.get("/exports/zone-matrix-ups.json")
    assert response.status_code == 200 and response.is_streamed
    assert response.get_json() == {"origins": ["100"], "destinations": ["200", "300", "400", "500", "600"],
                                   "matrix": [[2, 1, 5, 3, 4]]}
    etag, modified = response.headers["ETag"], response.headers["Last-Modified"]
    assert user.get("/exports/zone-matrix-ups.json", headers={"If-None-Match": etag}).status_code == 304
    assert user.get("/exports/zone-matrix-ups.json",
                    headers={"If-Modified-Since": modified}).status_code == 304
    run_transformations(system_context(settings), ["delivery-matrix"])
    again = user.get("/exports/zone-matrix-ups.json", headers={"If-None-Match": etag})
    assert again.status_code == 200 and again.headers["ETag"] != etag
    csv_response = user.get("/exports/delivery_matrix.csv")
    body = csv_response.get_data()
    assert csv_response.headers["Content-Disposition"] == 'attachment; filename="delivery_matrix.csv"'
    assert body.startswith(b"origin_zip3,dest_zip3,") and body.count(b"\n") == 20
    assert user.get("/exports/nope.csv").status_code == 404
