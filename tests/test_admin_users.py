"""The users admin pages, driven through the server-rendered forms."""

from __future__ import annotations

import re
import threading
from contextlib import closing

import pytest

from handled.auth import sessions, users
from handled.auth.web import COOKIE_NAME
from handled.models import AuditLog, Session, User
from tests.support.accounts import TEST_PASSWORD, csrf_token, make_user
from tests.support.databases import connect
from tests.support.waiting import wait_until


def sign_in(app, email, password):
    client = app.test_client()
    response = client.post("/login", data={"email": email, "password": password, "csrf_token": csrf_token(client)})
    return client, response


def user_id(app, email):
    with app.app_context():
        return User.get(User.email == email).id


def test_list_searches_and_pages(app, login_client):
    admin = login_client(role="admin")
    for n in range(30):
        make_user(app, permissions=None, role="salesperson", email=f"picker{n:02d}@warehouse.test", name=f"Picker {n}")
    page1 = admin.get("/admin/users?q=picker").get_data(as_text=True)
    assert "30 user(s)" in page1 and "Page 1 of 2" in page1 and "picker00@warehouse.test" in page1
    page2 = admin.get("/admin/users?q=picker&page=2").get_data(as_text=True)
    assert "picker29@warehouse.test" in page2 and "picker00@warehouse.test" not in page2
    assert "1 user(s)" in admin.get("/admin/users?q=Picker 17").get_data(as_text=True)


def test_create_with_temporary_password_that_must_be_changed(app, login_client):
    admin = login_client(role="admin")
    response = admin.post("/admin/users/new", data={"email": "New.Hire@Warehouse.test", "name": "New Hire",
                                                    "roles": ["salesperson"]}, follow_redirects=True)
    page = response.get_data(as_text=True)
    temporary = re.search(r'id="temporary-password">([^<]+)<', page).group(1)
    client, login = sign_in(app, "new.hire@warehouse.test", temporary)
    assert login.headers["Location"] == "/account/password"
    assert client.get("/customers/organizations").headers["Location"] == "/account/password"
    assert client.get("/api/me").status_code == 403
    changed = client.post("/account/password", data={"current_password": temporary,
                                                      "new_password": "my own long passphrase"})
    assert changed.status_code == 302
    assert client.get("/customers/organizations").status_code == 200
    with app.app_context():
        row = AuditLog.get((AuditLog.action == "user.create") & (AuditLog.target_label == "new.hire@warehouse.test"))
        assert row.actor_email == admin.user.email and row.details == {"roles": ["salesperson"]}


def test_create_refuses_duplicates_and_bad_input_with_a_message(app, login_client):
    admin = login_client(role="admin")
    existing = make_user(app, role="salesperson")
    page = admin.post("/admin/users/new", data={"email": existing.email.upper(), "name": "Dup"})
    assert page.status_code == 409 and "already exists" in page.get_data(as_text=True)
    page = admin.post("/admin/users/new", data={"email": "not-an-email", "name": "X"})
    assert "is not an email address; write it as name@example.com." in page.get_data(as_text=True)
    page = admin.post("/admin/users/new", data={"email": "short@example.test", "name": "X", "password": "short"})
    assert "at least 12 characters" in page.get_data(as_text=True)


def test_edit_details_and_roles(app, login_client):
    admin = login_client(role="admin")
    user = make_user(app, role="salesperson")
    uid = user.id
    admin.post(f"/admin/users/{uid}", data={"email": "renamed@example.test", "name": "Renamed"})
    admin.post(f"/admin/users/{uid}/roles", data={"roles": ["warehouse_lead", "salesperson"]})
    page = admin.get(f"/admin/users/{uid}").get_data(as_text=True)
    assert "renamed@example.test" in page and "Renamed" in page
    with app.app_context():
        from handled.auth.users import role_codes_of
        assert role_codes_of(uid) == ["salesperson", "warehouse_lead"]


def test_reset_password_ends_sessions_and_forces_a_change(app, login_client):
    admin = login_client(role="admin")
    victim = login_client(role="salesperson")
    assert victim.get("/api/me").status_code == 200
    page = admin.post(f"/admin/users/{victim.user.id}/reset-password", follow_redirects=True).get_data(as_text=True)
    temporary = re.search(r'id="temporary-password">([^<]+)<', page).group(1)
    assert victim.get("/api/me").status_code == 401
    _, old = sign_in(app, victim.user.email, TEST_PASSWORD)
    assert old.status_code == 401
    _, new = sign_in(app, victim.user.email, temporary)
    assert new.headers["Location"] == "/account/password"


def test_disable_enable_and_delete_with_confirmation(app, login_client):
    admin = login_client(role="admin")
    victim = login_client(role="salesperson")
    admin.post(f"/admin/users/{victim.user.id}/disable")
    assert victim.get("/api/me").status_code == 401
    assert sign_in(app, victim.user.email, TEST_PASSWORD)[1].status_code == 401
    admin.post(f"/admin/users/{victim.user.id}/enable")
    assert sign_in(app, victim.user.email, TEST_PASSWORD)[1].status_code == 302
    confirm = admin.get(f"/admin/users/{victim.user.id}/delete").get_data(as_text=True)
    assert "Type the email address to confirm" in confirm
    refused = admin.post(f"/admin/users/{victim.user.id}/delete", data={"confirm_email": "wrong@example.test"},
                         follow_redirects=True)
    assert "Type the user&#39;s email address to confirm" in refused.get_data(as_text=True)
    admin.post(f"/admin/users/{victim.user.id}/delete", data={"confirm_email": victim.user.email})
    with app.app_context():
        assert User.get_or_none(User.id == victim.user.id) is None
        trail = AuditLog.get(AuditLog.action == "user.delete")
        assert trail.target_label == victim.user.email and trail.actor_email == admin.user.email
    assert victim.get("/api/me").status_code == 401


def test_last_admin_cannot_be_disabled_deleted_or_demoted(app, login_client):
    admin = login_client(role="admin")
    uid = admin.user.id
    for url, data in [(f"/admin/users/{uid}/disable", {}), (f"/admin/users/{uid}/roles", {"roles": ["salesperson"]}),
                      (f"/admin/users/{uid}/delete", {"confirm_email": admin.user.email})]:
        page = admin.post(url, data=data, follow_redirects=True).get_data(as_text=True)
        assert "last active administrator" in page, url
    assert admin.get("/api/me").status_code == 200
    second = make_user(app, role="admin")
    admin.post(f"/admin/users/{second.id}/disable")
    assert "last active administrator" in admin.post(f"/admin/users/{uid}/disable",
                                                     follow_redirects=True).get_data(as_text=True)


@pytest.mark.one_mode    # PRIMARY alone
def test_two_admins_removing_each_others_admin_role_at_once_leave_one_admin(app, settings, login_client):
    """Both requests are held inside their transactions (the test holds the admin role's row, which
    each one's check locks) until both wait, then released together: without the lock that
    serialises last-admin checks both would see two admins and both demote, leaving none."""
    first, second = login_client(role="admin"), login_client(role="admin")
    pages = {}

    def demote(name, client, other):
        pages[name] = client.post(f"/admin/users/{other.user.id}/roles", data={"roles": ["salesperson"]},
                                  follow_redirects=True).get_data(as_text=True)

    role = connect(settings.primary.dbname, autocommit=False)     # as the server's superuser
    with role.cursor() as cur:
        cur.execute("SELECT id FROM config.roles WHERE code = 'admin' FOR UPDATE")
    threads = [threading.Thread(target=demote, args=("first", first, second)),
               threading.Thread(target=demote, args=("second", second, first))]
    try:
        for thread in threads:
            thread.start()
        wait_until(lambda: waiting_on_locks(settings) == 2, message="both role changes to wait inside their transactions")
    finally:
        role.rollback()
        role.close()
        for thread in threads:
            thread.join(30)
    refused = [name for name, page in pages.items() if "last active administrator" in page]
    assert len(pages) == 2 and len(refused) == 1, pages
    with app.app_context():
        assert len(users.active_admin_ids()) == 1
        kept = first if refused == ["second"] else second
        assert users.active_admin_ids() == {kept.user.id}
        assert AuditLog.select().where(AuditLog.action == "user.roles").count() == 1


def waiting_on_locks(settings) -> int:
    """Backends of the PRIMARY database waiting on a lock (row or advisory), other than the test's."""
    with closing(connect(settings.primary.dbname)) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()")
        return cur.fetchone()[0]


def test_active_sessions_listed_and_revoked_by_an_admin(app, login_client):
    admin = login_client(role="admin")
    victim = login_client(role="salesperson")
    page = admin.get(f"/admin/users/{victim.user.id}").get_data(as_text=True)
    session_hash = sessions.hash_token(victim.session_token)
    assert session_hash in page and "pytest" in page
    admin.post(f"/admin/users/{victim.user.id}/sessions/{session_hash}/revoke")
    assert victim.get("/api/me").status_code == 401


def test_my_account_change_password_keeps_only_this_session(app, login_client):
    me = login_client(role="salesperson")
    other, _ = sign_in(app, me.user.email, TEST_PASSWORD)
    assert other.get("/api/me").status_code == 200
    wrong = me.post("/account/password", data={"current_password": "nope", "new_password": "whatever long enough"})
    assert "The current password is not correct." in wrong.get_data(as_text=True)
    local = me.user.email.split("@")[0]
    bad = me.post("/account/password", data={"current_password": TEST_PASSWORD,
                                             "new_password": f"xx{local}xx-and-more"})
    assert "must not be your email" in bad.get_data(as_text=True)
    ok = me.post("/account/password", data={"current_password": TEST_PASSWORD,
                                            "new_password": "another long passphrase"})
    assert ok.status_code == 302
    assert me.get("/api/me").status_code == 200
    assert other.get("/api/me").status_code == 401


def test_sign_out_everywhere_else(app, login_client):
    me = login_client(role="salesperson")
    other, _ = sign_in(app, me.user.email, TEST_PASSWORD)
    assert "Sign out everywhere else" in me.get("/account").get_data(as_text=True)
    me.post("/account/sessions/end-others")
    assert me.get("/api/me").status_code == 200 and other.get("/api/me").status_code == 401
    with app.app_context():
        assert Session.select().count() == 1


def test_revoking_my_own_current_session_signs_me_out(app, login_client):
    me = login_client(role="salesperson")
    response = me.post(f"/account/sessions/{sessions.hash_token(me.session_token)}/revoke")
    assert response.headers["Location"] == "/login"
    assert COOKIE_NAME + "=;" in response.headers["Set-Cookie"]
    assert me.get("/api/me").status_code == 401
