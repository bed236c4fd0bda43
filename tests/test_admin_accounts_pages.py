"""Account administration pages (issue 14, section 4 and the user parts of 5 and 6).

- a password reset is confirmed on a page first; the POST redirects (303) to a page that
  shows the temporary password once (kept in Redis for that one read, never in a URL or a
  log); a reload says it was shown and resets nothing;
- a user created with a generated password goes the same way;
- deleting a role shows how many users hold it (and who) before the POST;
- the user page says whether sign-in to the account is throttled, and Unlock clears it;
- the users list filters by role and state (active, disabled, locked), searches ``%``, ``_`` and ``\\`` literally,
  and a page past the end shows the last page;
- an unknown user is a 404 page with a sentence (a POST about one: the list, with that sentence);
- with Redis not answering, no password is reset or generated that could not be shown;
- the user forms show every refused field's sentence next to it, at once.
"""

from __future__ import annotations

import logging
import re

import pytest

from handled.admin.user_views import TEMPORARY_PASSWORD_COOKIE
from handled.context import system_context
from handled.models import AuditLog, User
from tests.support.accounts import TEST_PASSWORD, make_user, sign_in

pytestmark = pytest.mark.one_mode   # PRIMARY only: the same in both database modes

PASSWORD_SHOWN = re.compile(r'id="temporary-password">([^<]+)<')


def password_hash(app, user_id):
    with app.app_context():
        return User.get(User.id == user_id).password_hash


def audit_count(app, action):
    with app.app_context():
        return AuditLog.select().where(AuditLog.action == action).count()


def redis_values(redis_client) -> list[bytes]:
    values = []
    for key in redis_client.scan_iter():
        if redis_client.type(key) == b"string":
            values.append(redis_client.get(key) or b"")
    return values


# -- password reset -----------------------------------------------------------------------------

def test_reset_is_confirmed_then_redirects_and_shows_the_password_once(app, login_client, redis_client, caplog):
    caplog.set_level(logging.DEBUG)
    admin = login_client(role="admin")
    clerk = login_client(role="salesperson")
    uid = clerk.user.id
    before = password_hash(app, uid)

    user_page = admin.get(f"/admin/users/{uid}").get_data(as_text=True)
    assert f'href="/admin/users/{uid}/reset-password"' in user_page

    confirm = admin.get(f"/admin/users/{uid}/reset-password")
    text = confirm.get_data(as_text=True)
    assert confirm.status_code == 200
    assert f"Reset the password of {clerk.user.email}?" in text
    assert "Their sessions end and they must choose a new one at sign-in." in text
    assert f'action="/admin/users/{uid}/reset-password"' in text and 'method="post"' in text
    assert password_hash(app, uid) == before and clerk.get("/api/me").status_code == 200

    done = admin.post(f"/admin/users/{uid}/reset-password")
    assert done.status_code == 303
    location = done.headers["Location"]
    assert re.fullmatch(rf"/admin/users/{uid}/temporary-password/[A-Za-z0-9_-]{{20,}}", location), location
    after = password_hash(app, uid)
    assert after != before and clerk.get("/api/me").status_code == 401

    # another administrator holding the link reads nothing, and does not use up the one read
    other_admin = login_client(role="admin")
    stranger = other_admin.get(location)
    assert stranger.status_code == 410 and not PASSWORD_SHOWN.search(stranger.get_data(as_text=True))

    shown = admin.get(location)
    assert shown.status_code == 200
    temporary = PASSWORD_SHOWN.search(shown.get_data(as_text=True)).group(1)
    assert temporary not in location
    assert "no-store" in shown.headers.get("Cache-Control", "")

    again = admin.get(location)
    text = again.get_data(as_text=True)
    assert again.status_code == 410 and not PASSWORD_SHOWN.search(text) and temporary not in text
    assert "already shown" in text and "reset the password again" in text
    assert f'href="/admin/users/{uid}/reset-password"' in text
    assert password_hash(app, uid) == after and audit_count(app, "user.reset_password") == 1

    assert not any(temporary.encode() in value for value in redis_values(redis_client))
    assert not any(temporary in record.getMessage() for record in caplog.records)
    client = sign_in(app, clerk.user.email, temporary)
    assert client.get("/customers/organizations").headers["Location"] == "/account/password"


def test_refused_reset_offers_no_confirmation_and_shows_no_password(app, login_client):
    superuser = login_client(role="superuser")
    admin = login_client(role="admin")
    uid = admin.user.id
    before = password_hash(app, uid)
    confirm = superuser.get(f"/admin/users/{uid}/reset-password", follow_redirects=True).get_data(as_text=True)
    assert "You cannot reset the password of" in confirm and 'action="/admin/users/%d/reset-password"' % uid \
        not in confirm
    refused = superuser.post(f"/admin/users/{uid}/reset-password")
    assert refused.status_code in (302, 303) and "temporary-password" not in refused.headers["Location"]
    assert password_hash(app, uid) == before


def test_create_with_a_generated_password_redirects_to_the_one_time_page(app, login_client):
    admin = login_client(role="admin")
    created = admin.post("/admin/users/new", data={"email": "temp.hire@warehouse.test", "name": "Temp Hire",
                                                   "roles": ["salesperson"]})
    assert created.status_code == 303
    location = created.headers["Location"]
    with app.app_context():
        uid = User.get(User.email == "temp.hire@warehouse.test").id
    assert location.startswith(f"/admin/users/{uid}/temporary-password/")
    page = admin.get(location).get_data(as_text=True)
    temporary = PASSWORD_SHOWN.search(page).group(1)
    assert "Created temp.hire@warehouse.test" in page
    reload = admin.get(location).get_data(as_text=True)
    assert "already shown" in reload and temporary not in reload
    sign_in(app, "temp.hire@warehouse.test", temporary)


def test_temporary_password_is_not_readable_from_redis(app, login_client, redis_client):
    """Review F5: while it waits to be shown, nothing in Redis (values or key names) gives the password."""
    admin = login_client(role="admin")
    target = make_user(app, role="salesperson")
    done = admin.post(f"/admin/users/{target.id}/reset-password")
    assert done.status_code == 303
    kept = {key: redis_client.get(key) for key in redis_client.scan_iter("handled:temporary-password:*")}
    assert len(kept) == 1
    shown = admin.get(done.headers["Location"])
    temporary = PASSWORD_SHOWN.search(shown.get_data(as_text=True)).group(1)
    assert not any(temporary.encode() in key or temporary.encode() in value for key, value in kept.items()), \
        "the temporary password is readable in Redis"


def test_the_one_time_key_is_only_in_a_cookie_scoped_to_the_page(app, login_client, redis_client):
    """The key that opens the kept password travels in an HttpOnly cookie for that one page:
    the link and the Redis value without it show nothing, and use nothing up."""
    admin = login_client(role="admin")
    target = make_user(app, role="salesperson")
    done = admin.post(f"/admin/users/{target.id}/reset-password")
    location = done.headers["Location"]
    cookie = next(c for c in done.headers.getlist("Set-Cookie") if c.startswith(TEMPORARY_PASSWORD_COOKIE))
    key = cookie.split(";", 1)[0].split("=", 1)[1]
    assert f"Path={location}" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert key not in location and not any(key.encode() in value for value in redis_values(redis_client))

    admin.delete_cookie(TEMPORARY_PASSWORD_COOKIE, path=location)
    without = admin.get(location)
    assert without.status_code == 410 and not PASSWORD_SHOWN.search(without.get_data(as_text=True))
    admin.set_cookie(TEMPORARY_PASSWORD_COOKIE, "A" * 43, path=location)  # a wrong key shows nothing either
    assert admin.get(location).status_code == 410

    done = admin.post(f"/admin/users/{target.id}/reset-password")  # the wrong key used the first one up
    shown = admin.get(done.headers["Location"])
    assert shown.status_code == 200 and PASSWORD_SHOWN.search(shown.get_data(as_text=True))
    assert any(c.startswith(f"{TEMPORARY_PASSWORD_COOKIE}=;") for c in shown.headers.getlist("Set-Cookie"))


# -- role deletion ------------------------------------------------------------------------------

def role_id(app, code):
    from handled.models import Role

    with app.app_context():
        return Role.get(Role.code == code).id


def test_role_delete_is_confirmed_with_the_holder_count(app, settings, login_client):
    admin = login_client(role="admin")
    admin.post("/admin/roles/new", data={"code": "night_shift", "name": "Night shift", "permissions": ["run_imports"]})
    admin.post("/admin/roles/new", data={"code": "unused_role", "name": "Unused", "permissions": ["run_imports"]})
    for n in range(12):
        make_user(app, role="night_shift", email=f"night{n:02d}@warehouse.test", name=f"Night Worker {n:02d}")
    rid = role_id(app, "night_shift")

    listing = admin.get("/admin/roles").get_data(as_text=True)
    assert f'href="/admin/roles/{rid}/delete"' in listing

    page = admin.get(f"/admin/roles/{rid}/delete")
    text = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "Delete the role Night shift?" in text and "12 users hold it" in text
    assert "Night Worker 00" in text and "Night Worker 09" in text and "Night Worker 10" not in text
    assert "and 2 more" in text
    assert f'action="/admin/roles/{rid}/delete"' in text
    assert role_id(app, "night_shift") == rid  # nothing deleted by looking

    empty = admin.get(f"/admin/roles/{role_id(app, 'unused_role')}/delete").get_data(as_text=True)
    assert "Nobody holds it" in empty

    done = admin.post(f"/admin/roles/{rid}/delete", data={"holders": "12"}, follow_redirects=True)
    assert "Deleted role night_shift" in done.get_data(as_text=True)
    with app.app_context():
        row = AuditLog.get(AuditLog.action == "role.delete")
        assert row.details == {"holders": 12}


def test_role_delete_with_a_stale_holder_count_asks_again(app, login_client):
    admin = login_client(role="admin")
    admin.post("/admin/roles/new", data={"code": "day_shift", "name": "Day shift", "permissions": ["run_imports"]})
    rid = role_id(app, "day_shift")
    make_user(app, role="day_shift")
    page = admin.post(f"/admin/roles/{rid}/delete", data={"holders": "0"}, follow_redirects=True)
    text = page.get_data(as_text=True)
    assert "1 user holds it" in text and "changed since" in text
    assert role_id(app, "day_shift") == rid


def test_system_role_delete_page_says_why_not(app, login_client):
    admin = login_client(role="admin")
    page = admin.get(f"/admin/roles/{role_id(app, 'salesperson')}/delete", follow_redirects=True)
    text = page.get_data(as_text=True)
    assert "is a system role and cannot be deleted" in text and 'name="holders"' not in text


# -- the users list -----------------------------------------------------------------------------

def test_users_filter_by_role_and_state(app, settings, login_client):
    from handled.auth import users

    admin = login_client(role="admin", email="boss@warehouse.test")
    make_user(app, role="warehouse_lead", email="lead.active@warehouse.test")
    gone = make_user(app, role="warehouse_lead", email="lead.disabled@warehouse.test")
    make_user(app, role="salesperson", email="sales.active@warehouse.test")
    with app.app_context():
        users.set_disabled(system_context(settings), gone.id, True)

    def emails(query):
        page = admin.get(f"/admin/users?{query}")
        assert page.status_code == 200
        return sorted(set(re.findall(r">([a-z.]+@warehouse\.test)</a>", page.get_data(as_text=True))))

    assert emails("role=warehouse_lead") == ["lead.active@warehouse.test", "lead.disabled@warehouse.test"]
    assert emails("state=disabled") == ["lead.disabled@warehouse.test"]
    assert emails("state=active") == ["boss@warehouse.test", "lead.active@warehouse.test",
                                      "sales.active@warehouse.test"]
    assert emails("role=warehouse_lead&state=active") == ["lead.active@warehouse.test"]
    assert emails("role=warehouse_lead&state=active&q=LEAD") == ["lead.active@warehouse.test"]
    page = admin.get("/admin/users?role=warehouse_lead&state=disabled").get_data(as_text=True)
    assert re.search(r'<option value="warehouse_lead"\s+selected', page)
    assert re.search(r'<option value="disabled"\s+selected', page)
    unknown = admin.get("/admin/users?role=no_such_role&state=sleepy").get_data(as_text=True)
    assert "There is no role no_such_role" in unknown and "sleepy is not a state" in unknown


def test_the_user_page_shows_a_throttled_sign_in_and_unlock_clears_it(app, settings, login_client):
    admin = login_client(role="admin", email="boss@warehouse.test")
    clerk = make_user(app, role="salesperson", email="dana@warehouse.test")
    make_user(app, role="salesperson", email="eli@warehouse.test")

    def emails(query):
        page = admin.get(f"/admin/users?{query}").get_data(as_text=True)
        return sorted(set(re.findall(r">([a-z.]+@warehouse\.test)</a>", page)))

    page = admin.get(f"/admin/users/{clerk.id}").get_data(as_text=True)
    assert "Not throttled: no failed sign-ins in the last 15 minutes." in page and 'id="unlock-user"' not in page
    assert emails("state=locked") == []
    stranger = app.test_client()
    for _ in range(settings.login_max_failures_per_account):
        stranger.post("/login", data={"email": clerk.email, "password": "not it"}, environ_base={"REMOTE_ADDR": "192.0.2.66"})
    def owner_signs_in_from_that_address():
        return stranger.post("/login", data={"email": clerk.email, "password": TEST_PASSWORD},
                             environ_base={"REMOTE_ADDR": "192.0.2.66"}).status_code

    assert owner_signs_in_from_that_address() == 401
    page = admin.get(f"/admin/users/{clerk.id}").get_data(as_text=True)
    assert "Sign-in is throttled for this account." in page
    assert "Refused from 1 address after 10 failures there:\n    <code>192.0.2.66</code>." in page
    assert 'id="unlock-user"' in page
    assert emails("state=locked") == ["dana@warehouse.test"]
    assert "sign-in throttled" in admin.get("/admin/users?q=dana").get_data(as_text=True)
    assert "sign-in throttled" not in admin.get("/admin/users?q=eli").get_data(as_text=True)

    clerk_only = login_client(permissions=["view_customers"])
    assert clerk_only.post(f"/admin/users/{clerk.id}/unlock").status_code == 403
    admin.send_csrf = False
    assert admin.post(f"/admin/users/{clerk.id}/unlock").status_code == 400     # no CSRF token
    admin.send_csrf = True
    assert emails("state=locked") == ["dana@warehouse.test"] and audit_count(app, "user.unlock") == 0

    done = admin.post(f"/admin/users/{clerk.id}/unlock", follow_redirects=True).get_data(as_text=True)
    assert "Unlocked dana@warehouse.test" in done and "Not throttled: no failed sign-ins" in done
    assert emails("state=locked") == [] and audit_count(app, "user.unlock") == 1
    assert owner_signs_in_from_that_address() == 302
    again = admin.post(f"/admin/users/{clerk.id}/unlock", follow_redirects=True).get_data(as_text=True)
    assert "was not throttled; there was nothing to unlock" in again


def test_users_search_treats_percent_underscore_and_backslash_literally(app, login_client):
    admin = login_client(role="admin", email="boss@warehouse.test")
    make_user(app, role="salesperson", email="a_b@warehouse.test", name="Underscore")
    make_user(app, role="salesperson", email="axb@warehouse.test", name="Plain")
    make_user(app, role="salesperson", email="c@warehouse.test", name="Half 50% off")
    make_user(app, role="salesperson", email="d@warehouse.test", name="Back\\slash")

    def found(search):
        page = admin.get("/admin/users", query_string={"q": search}).get_data(as_text=True)
        return sorted(set(re.findall(r">([a-z_.]+@warehouse\.test)</a>", page)))

    assert found("_") == ["a_b@warehouse.test"]
    assert found("a_b") == ["a_b@warehouse.test"]
    assert found("%") == ["c@warehouse.test"]
    assert found("0%") == ["c@warehouse.test"]
    assert found("\\") == ["d@warehouse.test"]
    assert found("k\\s") == ["d@warehouse.test"]


def test_a_page_past_the_end_shows_the_last_page(app, login_client):
    admin = login_client(role="admin", email="boss@warehouse.test")
    for n in range(30):
        make_user(app, role="salesperson", email=f"picker{n:02d}@warehouse.test", name=f"Picker {n}")
    for page in ("3", "99", "99999999999999999999999"):
        text = admin.get(f"/admin/users?q=picker&page={page}").get_data(as_text=True)
        assert "Page 2 of 2" in text and "picker29@warehouse.test" in text, page
    for page in ("0", "-4", "abc"):
        text = admin.get(f"/admin/users?q=picker&page={page}").get_data(as_text=True)
        assert "Page 1 of 2" in text and "picker00@warehouse.test" in text, page


# -- unknown ids --------------------------------------------------------------------------------

@pytest.mark.parametrize("user_id", ["987654", "99999999999999999999999"])
def test_an_unknown_user_is_a_404_page_with_a_sentence(login_client, user_id):
    admin = login_client(role="admin")
    for url in (f"/admin/users/{user_id}", f"/admin/users/{user_id}/reset-password",
                f"/admin/users/{user_id}/delete", f"/admin/users/{user_id}/temporary-password/abcdefghijklmnopqrstuv"):
        page = admin.get(url)
        text = page.get_data(as_text=True)
        assert page.status_code == 404, url
        assert f"There is no user with the id {user_id}" in text, url
        assert "Something went wrong" not in text and "9223372036854775807" not in text, url
        assert 'href="/admin/users"' in text, url
    for url in (f"/admin/users/{user_id}", f"/admin/users/{user_id}/reset-password", f"/admin/users/{user_id}/disable"):
        posted = admin.post(url, data={"email": "x@example.test", "name": "X"}, follow_redirects=True)
        text = posted.get_data(as_text=True)
        assert f"There is no user with the id {user_id}" in text and "Something went wrong" not in text, url


@pytest.mark.parametrize("role_id", ["987654", "99999999999999999999999"])
def test_an_unknown_role_is_a_404_page_with_a_sentence(login_client, role_id):
    admin = login_client(role="admin")
    for url in (f"/admin/roles/{role_id}", f"/admin/roles/{role_id}/delete"):
        page = admin.get(url)
        text = page.get_data(as_text=True)
        assert page.status_code == 404, url
        assert f"There is no role with the id {role_id}" in text, url
        assert "9223372036854775807" not in text and "Something went wrong" not in text, url


# -- field errors -------------------------------------------------------------------------------

def field_error(text, name):
    match = re.search(rf'<span class="field-error" id="{name}-error">([^<]*)</span>', text)
    return match.group(1) if match else None


def test_new_user_form_shows_every_field_error_at_once(app, login_client):
    admin = login_client(role="admin")
    page = admin.post("/admin/users/new", data={"email": "", "name": "  ", "password": "short"})
    text = page.get_data(as_text=True)
    assert page.status_code == 400
    assert field_error(text, "email") == "Email is required."
    assert field_error(text, "name") == "Name is required."
    assert field_error(text, "password") == "The password must be at least 12 characters long."
    assert 'aria-describedby="email-error"' in text
    assert "An empty value" not in text

    page = admin.post("/admin/users/new", data={"email": "abc", "name": "Abc", "password": ""})
    text = page.get_data(as_text=True)
    assert field_error(text, "email") == "&#39;abc&#39; is not an email address; write it as name@example.com."
    assert field_error(text, "name") is None and 'value="Abc"' in text
    with app.app_context():
        assert User.select().where(User.name == "Abc").count() == 0


def test_edit_user_form_shows_every_field_error_at_once(app, login_client):
    admin = login_client(role="admin")
    clerk = make_user(app, role="salesperson", email="clerk@warehouse.test", name="Clerk")
    page = admin.post(f"/admin/users/{clerk.id}", data={"email": "clerk at warehouse", "name": ""})
    text = page.get_data(as_text=True)
    assert page.status_code == 400
    assert field_error(text, "email") == ("&#39;clerk at warehouse&#39; is not an email address; "
                                          "write it as name@example.com.")
    assert field_error(text, "name") == "Name is required."
    assert 'value="clerk at warehouse"' in text
    with app.app_context():
        row = User.get(User.id == clerk.id)
        assert (row.email, row.name) == ("clerk@warehouse.test", "Clerk")

    ok = admin.post(f"/admin/users/{clerk.id}", data={"email": "Clerk2@Warehouse.test", "name": "Clerk Two"})
    assert ok.status_code == 302
    with app.app_context():
        assert User.get(User.id == clerk.id).email == "clerk2@warehouse.test"


def test_users_signed_in_with_the_old_password_after_a_reset_are_refused(app, login_client):
    """The reset keeps its promise through the new flow: the old password no longer opens."""
    admin = login_client(role="admin")
    clerk = make_user(app, role="salesperson")
    admin.post(f"/admin/users/{clerk.id}/reset-password")
    client = app.test_client()
    from tests.support.accounts import csrf_token
    response = client.post("/login", data={"email": clerk.email, "password": TEST_PASSWORD,
                                           "csrf_token": csrf_token(client)})
    assert response.status_code == 401


def test_with_redis_not_answering_a_reset_or_generated_password_changes_nothing(settings):
    """The temporary password could not be kept to be shown: refused before anything changes."""
    from dataclasses import replace

    from handled import create_app
    from tests.support.accounts import sign_in_client
    from tests.support.processes import free_port

    app = create_app(replace(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0"))  # nothing listens
    admin = sign_in_client(app, make_user(app, role="admin"))
    clerk = make_user(app, role="salesperson")
    before = password_hash(app, clerk.id)

    refused = admin.post(f"/admin/users/{clerk.id}/reset-password", follow_redirects=True)
    text = refused.get_data(as_text=True)
    assert "Redis is not answering" in text and "nothing was changed" in text
    assert not PASSWORD_SHOWN.search(text)
    assert password_hash(app, clerk.id) == before and audit_count(app, "user.reset_password") == 0

    created = admin.post("/admin/users/new", data={"email": "later@warehouse.test", "name": "Later"})
    assert created.status_code == 503 and "nothing was changed" in created.get_data(as_text=True)
    with app.app_context():
        assert User.get_or_none(User.email == "later@warehouse.test") is None


def test_role_form_shows_every_field_error_at_once(app, login_client):
    admin = login_client(role="admin")
    page = admin.post("/admin/roles/new", data={"code": "Bad Code!", "name": " ", "permissions": ["run_imports"]})
    text = page.get_data(as_text=True)
    assert page.status_code == 400
    assert field_error(text, "code") == ("A role code is 2-41 lowercase letters, digits or underscores, "
                                         "starting with a letter.")
    assert field_error(text, "name") == "Name is required."
    assert 'value="Bad Code!"' in text and re.search(r'value="run_imports"\s+checked', text)

    admin.post("/admin/roles/new", data={"code": "packers", "name": "Packers", "permissions": ["run_imports"]})
    rid = role_id(app, "packers")
    page = admin.post(f"/admin/roles/{rid}", data={"name": "", "permissions": ["run_imports"]})
    assert page.status_code == 400 and field_error(page.get_data(as_text=True), "name") == "Name is required."
