"""The shared session cache: warm hits skip PRIMARY, and every revocation path holds
at once on two app instances, including the read-before / write-after race."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from handled import create_app
from handled.auth import roles as role_service
from handled.auth import session_cache, sessions, users
from tests.support.accounts import TEST_PASSWORD, client_with_token, make_user, new_session, setup_context
from tests.support.session_probes import (change_between_read_and_cache_write, count_primary_statements,
                                          pending_checks, session_lookups)

NEW_PASSWORD = "a brand new passphrase 42"




@pytest.fixture
def two_apps(settings):
    return create_app(settings), create_app(settings)


def me(client):
    response = client.get("/api/me")
    return response.status_code, (response.get_json() or {}).get("permissions")


def test_warm_cache_hit_makes_no_primary_query(two_apps):
    app_a, _ = two_apps
    user = make_user(app_a, role="salesperson")
    client = client_with_token(app_a, new_session(app_a, user))
    with count_primary_statements() as cold:
        assert client.get("/api/me").status_code == 200
    assert session_lookups(cold) == 1
    with count_primary_statements() as warm:
        for _ in range(20):
            assert client.get("/api/me").status_code == 200
    assert warm == []


def test_one_session_on_two_instances_looks_up_primary_at_most_once_per_ttl(settings):
    ttl = 1
    fast = replace(settings, session_cache_ttl=ttl)
    app_a, app_b = create_app(fast), create_app(fast)
    user = make_user(app_a, role="salesperson")
    token = new_session(app_a, user)
    clients = [client_with_token(app_a, token), client_with_token(app_b, token)]
    requests = 0
    with count_primary_statements() as statements:
        started = time.monotonic()
        while time.monotonic() - started < 2.5 * ttl:
            assert clients[requests % 2].get("/api/me").status_code == 200
            requests += 1
        elapsed = time.monotonic() - started
    windows = int(elapsed // ttl) + 1
    assert requests > 20
    assert 2 <= session_lookups(statements) <= windows
    # Besides the lookups, only this process's check for invalidations recorded while Redis
    # was unreachable (at most once per PENDING_CHECK_INTERVAL), and nothing else:
    checks = pending_checks(statements)
    assert checks <= elapsed / session_cache.PENDING_CHECK_INTERVAL + 1
    assert len(statements) == session_lookups(statements) + checks


# Each trigger: (setup(app, admin_app) -> context, change(context), check(context, app) after the change).
def _reset(ctx):
    users.reset_password(setup_context(ctx["settings"]), ctx["user"].id)


def _disable(ctx):
    users.set_disabled(setup_context(ctx["settings"]), ctx["user"].id, True)


def _delete(ctx):
    users.delete_user(setup_context(ctx["settings"]), ctx["user"].id)


def _role_change(ctx):
    users.set_user_roles(setup_context(ctx["settings"]), ctx["user"].id, ["warehouse_lead"])


def _role_permission_change(ctx):
    role = role_service.Role.get(role_service.Role.code == "salesperson")
    role_service.update_role(setup_context(ctx["settings"]), role.id, role.name, role.description,
                             ["download_exports"])


def _password_change(ctx):
    users.change_own_password(setup_context(ctx["settings"]), ctx["user"].id, TEST_PASSWORD, NEW_PASSWORD,
                              sessions.hash_token(ctx["keeper"]))


TRIGGERS = {
    "password_reset": (_reset, "refused"),
    "disable": (_disable, "refused"),
    "delete": (_delete, "refused"),
    "role_change": (_role_change, {"view_customers", "run_imports", "run_transformations", "download_exports"}),
    "role_permission_change": (_role_permission_change, {"download_exports"}),
    "password_change": (_password_change, "refused"),
}


def _prepare(settings, apps):
    app_a, app_b = apps
    make_user(app_a, role="admin")  # so the user under test is never the last admin
    user = make_user(app_a, role="salesperson")
    token = new_session(app_a, user)
    keeper = new_session(app_a, user)
    ctx = {"settings": settings, "user": user, "token": token, "keeper": keeper}
    olds = [client_with_token(app, token) for app in apps]
    for client in olds:  # warm the shared cache from both instances
        assert me(client) == (200, ["download_exports", "view_customers"])
    return ctx, olds


def _assert_after(expected, ctx, apps, olds):
    for client in olds:
        status, permissions = me(client)
        if expected == "refused":
            assert status == 401
        else:
            assert status == 200 and set(permissions) == expected
    if expected == "refused" and ctx.get("checked_keeper", True):
        keeper_status = [me(client_with_token(app, ctx["keeper"]))[0] for app in apps]
        ctx["keeper_status"] = keeper_status


@pytest.mark.parametrize("trigger", sorted(TRIGGERS))
def test_revocation_holds_on_both_instances_once_the_change_returns(settings, two_apps, trigger):
    change, expected = TRIGGERS[trigger]
    ctx, olds = _prepare(settings, two_apps)
    with two_apps[1].test_request_context():
        change(ctx)
    _assert_after(expected, ctx, two_apps, olds)
    if trigger == "password_change":
        assert ctx["keeper_status"] == [200, 200]  # the session that changed it stays
    elif expected == "refused":
        assert ctx["keeper_status"] == [401, 401]


@pytest.mark.parametrize("trigger", sorted(TRIGGERS))
def test_revocation_survives_a_lookup_that_read_primary_before_the_change(settings, two_apps, trigger):
    change, expected = TRIGGERS[trigger]
    app_a, app_b = two_apps
    ctx, olds = _prepare(settings, two_apps)
    token_hash = sessions.hash_token(ctx["token"])
    with app_a.app_context():
        session_cache.invalidate(token_hashes=[token_hash])  # force the next request to read PRIMARY

    def change_on_instance_b():
        with app_b.test_request_context():
            change(ctx)

    with change_between_read_and_cache_write(change_on_instance_b) as fired:
        status, permissions = me(olds[0])
    assert fired and fired[0] is not None  # the lookup read the session before the change
    assert status == 200 and set(permissions) == {"download_exports", "view_customers"}
    from handled.cache import get_redis
    with app_a.app_context():
        assert get_redis().get(session_cache.entry_key(token_hash)) is None  # the stale write was refused
    _assert_after(expected, ctx, two_apps, olds)


def test_revoking_one_session_from_the_admin_side(settings, two_apps):
    app_a, app_b = two_apps
    user = make_user(app_a, role="salesperson")
    token, other = new_session(app_a, user), new_session(app_a, user)
    clients = [client_with_token(app, token) for app in two_apps]
    for client in clients:
        assert me(client)[0] == 200
    with app_b.test_request_context():
        assert sessions.revoke_session(user.id, sessions.hash_token(token))
    assert [me(c)[0] for c in clients] == [401, 401]
    assert me(client_with_token(app_a, other))[0] == 200


def test_idle_and_absolute_expiry(settings):
    from datetime import timedelta

    from handled.models import Session
    from handled.timeutil import utcnow
    app = create_app(replace(settings, session_cache_enabled=False))
    user = make_user(app, role="salesperson")
    idle, expired, fresh = (new_session(app, user) for _ in range(3))
    with app.app_context():
        Session.update(last_seen_at=utcnow() - timedelta(seconds=settings.session_idle_timeout + 5)).where(
            Session.id == sessions.hash_token(idle)).execute()
        Session.update(expires_at=utcnow() - timedelta(seconds=1)).where(
            Session.id == sessions.hash_token(expired)).execute()
    assert [me(client_with_token(app, t))[0] for t in (idle, expired, fresh)] == [401, 401, 200]
    result = app.test_cli_runner().invoke(args=["sessions", "purge"])
    assert result.exit_code == 0 and "2 expired" in result.output
    with app.app_context():
        assert [s.id for s in Session.select()] == [sessions.hash_token(fresh)]


def test_expired_sessions_are_purged_now_and_then_by_sign_ins(app):
    from datetime import timedelta

    from handled.models import Session
    from handled.timeutil import utcnow
    from tests.support.accounts import csrf_token
    user = make_user(app, role="salesperson")
    stale = new_session(app, user)
    with app.app_context():
        Session.update(expires_at=utcnow() - timedelta(seconds=1)).where(
            Session.id == sessions.hash_token(stale)).execute()
    client = app.test_client()
    client.post("/login", data={"email": user.email, "password": TEST_PASSWORD, "csrf_token": csrf_token(client)})
    with app.app_context():
        assert Session.get_or_none(Session.id == sessions.hash_token(stale)) is None
        assert Session.select().count() == 1


def test_concurrent_misses_on_two_instances_make_one_primary_lookup(two_apps):
    import threading

    from handled.db import primary_db
    app_a, app_b = two_apps
    user = make_user(app_a, role="salesperson")
    token = new_session(app_a, user)
    start = threading.Barrier(12)
    statuses = []

    def request_from(app):
        client = client_with_token(app, token)
        start.wait()
        statuses.append(client.get("/api/me").status_code)
        primary_db.close()

    threads = [threading.Thread(target=request_from, args=(app,)) for app in (app_a, app_b) for _ in range(6)]
    with count_primary_statements() as statements:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert statuses == [200] * 12
    assert session_lookups(statements) == 1
