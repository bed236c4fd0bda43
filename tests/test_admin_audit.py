"""The audit log page: exact action filter (or a whole family), literal actor search,
targets linked to their pages, details shown as fields, pages past the end."""

from __future__ import annotations

import pytest

from handled import audit
from handled.context import Actor, Context
from tests.support.accounts import make_user

pytestmark = pytest.mark.one_mode   # PRIMARY only: the same in both database modes


def add_rows(app, settings, action: str, count: int, actor_email: str = "someone@example.test", **fields):
    with app.app_context():
        ctx = Context(settings, Actor(id=None, email=actor_email, channel="web"))
        for _ in range(count):
            audit.record(ctx, action, **fields)


def actions_on(page: str) -> list[str]:
    body = page.split("<tbody>", 1)[1]
    return [chunk.split("</code>", 1)[0] for chunk in body.split("<td><code>")[1:]]


def test_action_filter_is_exact_and_family_filter_takes_the_prefix(app, settings, login_client):
    viewer = login_client(permissions=["view_audit"])
    add_rows(app, settings, "auth.sign_in", 2)
    add_rows(app, settings, "auth.sign_in_failed", 3)
    add_rows(app, settings, "auth.sign_out", 1)
    exact = actions_on(viewer.get("/admin/audit?action=auth.sign_in").get_data(as_text=True))
    assert exact == ["auth.sign_in"] * 2
    family = actions_on(viewer.get("/admin/audit?action=auth.*").get_data(as_text=True))
    assert sorted(family) == ["auth.sign_in"] * 2 + ["auth.sign_in_failed"] * 3 + ["auth.sign_out"]
    page = viewer.get("/admin/audit").get_data(as_text=True)
    assert '<option value="auth.*"' in page and '<option value="auth.sign_in_failed"' in page


def test_actor_search_takes_percent_and_underscore_literally(app, settings, login_client):
    viewer = login_client(permissions=["view_audit"])
    add_rows(app, settings, "user.update", 1, actor_email="a_b@example.test")
    add_rows(app, settings, "user.delete", 1, actor_email="axb@example.test")
    assert actions_on(viewer.get("/admin/audit?actor=a_b").get_data(as_text=True)) == ["user.update"]
    assert actions_on(viewer.get("/admin/audit?actor=%25").get_data(as_text=True)) == []
    assert actions_on(viewer.get("/admin/audit?actor=AXB").get_data(as_text=True)) == ["user.delete"]


def test_targets_link_to_their_pages_for_those_who_may_open_them(app, settings, login_client):
    admin = login_client(role="admin")
    target = make_user(app, role="salesperson", email="linked@example.test")
    add_rows(app, settings, "user.disable", 1, target_type="user", target_id=target.id, target_label=target.email)
    page = admin.get("/admin/audit?action=user.disable").get_data(as_text=True)
    assert f'<a href="/admin/users/{target.id}">linked@example.test</a>' in page
    auditor = login_client(permissions=["view_audit"])     # may read the log, not open user pages
    page = auditor.get("/admin/audit?action=user.disable").get_data(as_text=True)
    assert "linked@example.test" in page and f'href="/admin/users/{target.id}"' not in page


def test_details_are_fields_not_raw_json(app, settings, login_client):
    viewer = login_client(permissions=["view_audit"])
    add_rows(app, settings, "role.update", 1, target_type="role", target_id=1, target_label="dock",
             details={"added": ["run_imports", "view_customers"], "removed": [], "rehashed": True, "job_id": None})
    page = viewer.get("/admin/audit?action=role.update").get_data(as_text=True)
    assert "<dt>added</dt><dd>run_imports, view_customers</dd>" in page
    assert "<dt>removed</dt><dd>none</dd>" in page and "<dt>rehashed</dt><dd>yes</dd>" in page
    assert "<dt>job id</dt><dd>none</dd>" in page and "None" not in page.split("<tbody>", 1)[1]
    assert "{&#34;added&#34;" not in page and '{"added"' not in page


def test_a_page_past_the_end_shows_the_last_page(app, settings, login_client):
    viewer = login_client(permissions=["view_audit"])
    add_rows(app, settings, "user.update", 55)
    last = viewer.get("/admin/audit?action=user.update&page=99").get_data(as_text=True)
    assert len(actions_on(last)) == 5
