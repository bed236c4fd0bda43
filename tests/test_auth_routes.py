"""Every route in the URL map is guarded: anonymous → login page (or 401 for JSON),
signed in without the permission → 403. Only the login page, /healthz and static
files are public."""

from __future__ import annotations

import pytest
from flask import url_for

from handled.auth.permissions import endpoint_access
from tests.support.accounts import CsrfClient

pytestmark = pytest.mark.one_mode   # PRIMARY only: the same in both database modes

PUBLIC = {"static", "health.healthz", "auth.login"}
SKIP_METHODS = {"HEAD", "OPTIONS"}


def sample_url(app, rule) -> str:
    values = {}
    for name in rule.arguments:
        converter = rule._converters[name].__class__.__name__
        values[name] = 1 if converter in ("IntegerConverter", "FloatConverter") else "x"
    with app.test_request_context():
        return url_for(rule.endpoint, **values)


def guarded_rules(app):
    for rule in app.url_map.iter_rules():
        if rule.endpoint in PUBLIC:
            continue
        for method in sorted(rule.methods - SKIP_METHODS):
            yield rule, method, sample_url(app, rule)


def test_every_endpoint_is_marked_and_only_the_known_ones_are_public(app):
    marks = {rule.endpoint: endpoint_access(app, rule.endpoint) for rule in app.url_map.iter_rules()}
    unmarked = sorted(e for e, mark in marks.items() if mark is None)
    assert unmarked == [], f"endpoints without permission_required/login_required/public: {unmarked}"
    assert {e for e, mark in marks.items() if mark == "public"} == PUBLIC


def test_anonymous_requests_go_to_the_login_page_or_get_401(app):
    app.test_client_class = CsrfClient
    client = app.test_client()
    checked = 0
    for rule, method, url in guarded_rules(app):
        page = client.open(url, method=method)
        if url.startswith("/api/"):
            assert page.status_code == 401, (method, url)
        else:
            assert page.status_code == 302, (method, url, page.status_code)
            assert page.headers["Location"].startswith("/login"), (method, url)
        as_json = client.open(url, method=method, headers={"Accept": "application/json"})
        assert as_json.status_code == 401, (method, url)
        assert as_json.get_json()["error"] == "Sign-in required"
        checked += 1
    assert checked > 30


def test_signed_in_without_the_permission_gets_403(app, login_client):
    client = login_client(permissions=[])
    checked = 0
    for rule, method, url in guarded_rules(app):
        if rule.endpoint == "auth.logout":
            continue  # signing out is checked last, it ends this client's session
        view = app.view_functions[rule.endpoint]
        response = client.open(url, method=method)
        code = getattr(view, "required_permission", None)
        if code:
            assert response.status_code == 403, (method, url, response.status_code)
            checked += 1
        else:
            assert response.status_code not in (401, 403), (method, url)
            assert not response.headers.get("Location", "").startswith("/login"), (method, url)
    assert checked > 20
    assert client.post("/logout").headers["Location"] == "/login"


def test_holding_the_permission_opens_the_page(app, login_client):
    client = login_client(permissions=["view_customers"])
    assert client.get("/customers/organizations").status_code == 200
    assert client.get("/customers/organizations/new").status_code == 403
    assert client.get("/admin/users").status_code == 403


def test_home_page_needs_sign_in(client, login_client):
    assert client.get("/").status_code == 302
    assert login_client().get("/").status_code == 200


def test_the_403_page_names_the_permission_in_words_not_its_code(app, login_client):
    clerk = login_client(role="salesperson")
    page = clerk.get("/integrations/")
    text = page.get_data(as_text=True)
    assert page.status_code == 403
    assert "does not have the permission this page needs (Run imports)" in text
    assert "run_imports" not in text


@pytest.mark.parametrize("role,shown", [("salesperson", False), ("warehouse_lead", True), ("admin", True)])
def test_the_jobs_link_is_shown_only_to_users_who_can_queue_a_job(app, login_client, role, shown):
    """Only imports and transformations are queued; a salesperson (customers and exports) has none."""
    page = login_client(role=role).get("/").get_data(as_text=True)
    nav = page.split('<nav aria-label="Main">', 1)[1].split("</nav>", 1)[0]
    assert ('href="/jobs/"' in nav) is shown, nav
