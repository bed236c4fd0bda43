"""The shared session cache: warm hits skip PRIMARY, and every revocation path holds at once
on two app instances, including the read-before / write-after race.

Every claim about two instances runs on two real processes (tests/support/instances.py): two
gunicorns, each with its own Redis client, pools and cache state; a change is made on instance
B through its pages as an administrator would, and each instance's PRIMARY statements are read
from its own log. Instance A reaches Redis through a loopback proxy the race test uses to hold
A's cache write until B's change has returned."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from urllib.parse import urlsplit

import pytest

from handled import create_app
from handled.auth import roles as role_service
from handled.auth import session_cache, sessions
from tests.support.accounts import TEST_PASSWORD, client_with_token, make_user, new_session
from tests.support.environment import TEST_REDIS
from tests.support.instances import Instance
from tests.support.redis import open_test_redis
from tests.support.session_probes import pending_checks, session_lookups
from tests.support.tcp_proxy import TcpProxy
from tests.support.waiting import wait_until

NEW_PASSWORD = "a brand new passphrase 42"
SALESPERSON = ["download_exports", "view_customers"]
# The bytes of a cache write (the Lua script sent with EVAL): what the proxy holds in the race test.
CACHE_WRITE = session_cache._WRITE_SCRIPT.encode()


class Instances:
    """Instances A and B over the same databases, each reaching the test Redis through its own
    loopback proxy (``proxies``: what the tests hold or watch on the way)."""

    def __init__(self, settings, folder, **env):
        redis = urlsplit(TEST_REDIS)
        self.proxies = [TcpProxy(redis.port or 6379, redis.hostname or "127.0.0.1") for _ in "ab"]
        self.a, self.b = (Instance(settings, folder / name, name, REDIS_URL=proxy.url(path=redis.path or "/0"), **env)
                          for name, proxy in zip("ab", self.proxies))
        self.both = (self.a, self.b)

    def stop(self):
        for instance in self.both:
            instance.stop()
        for proxy in self.proxies:
            proxy.stop()


@pytest.fixture(scope="module")
def instances(migrated_settings, tmp_path_factory):
    pair = Instances(migrated_settings, tmp_path_factory.mktemp("instances"))
    yield pair
    pair.stop()


@pytest.fixture
def setup_app(settings):
    """This test process's app: it only creates the users and sessions the instances then serve."""
    return create_app(settings)


def me(client):
    """(status, permissions) of /api/me through a Flask test client (one process's claims)."""
    response = client.get("/api/me")
    return response.status_code, (response.get_json() or {}).get("permissions")


def statements_since(instance, start: int) -> list[str]:
    return instance.statements()[start:]


def test_warm_cache_hit_makes_no_primary_query(setup_app, instances):
    a = instances.a
    client = a.client(new_session(setup_app, make_user(setup_app, role="salesperson")))
    start = len(a.statements())
    assert client.me()[0] == 200
    cold = statements_since(a, start)
    assert session_lookups(cold) == 1
    start, began = len(a.statements()), time.monotonic()
    for _ in range(20):
        assert client.me()[0] == 200
    warm, elapsed = statements_since(a, start), time.monotonic() - began
    # Nothing but this process's check for invalidations recorded while Redis was unreachable
    # (at most once per PENDING_CHECK_INTERVAL):
    assert session_lookups(warm) == 0
    assert len(warm) == pending_checks(warm) <= elapsed / session_cache.PENDING_CHECK_INTERVAL + 1


def test_one_session_on_two_instances_looks_up_primary_at_most_once_per_ttl(setup_app, migrated_settings,
                                                                            tmp_path):
    ttl = 1
    pair = Instances(migrated_settings, tmp_path, SESSION_CACHE_TTL=ttl)
    try:
        token = new_session(setup_app, make_user(setup_app, role="salesperson"))
        clients = [instance.client(token) for instance in pair.both]
        starts = [len(instance.statements()) for instance in pair.both]
        requests = 0
        started = time.monotonic()
        while time.monotonic() - started < 2.5 * ttl:
            assert clients[requests % 2].me()[0] == 200
            requests += 1
        elapsed = time.monotonic() - started
        statements = {instance.name: instance.statements()[begun:] for instance, begun in zip(pair.both, starts)}
    finally:
        pair.stop()
    windows = int(elapsed // ttl) + 1
    lookups = {name: session_lookups(ran) for name, ran in statements.items()}
    assert requests > 20
    assert 2 <= sum(lookups.values()) <= windows, lookups
    for name, ran in statements.items():  # besides the lookups, only each process's pending checks
        checks = pending_checks(ran)
        assert checks <= elapsed / session_cache.PENDING_CHECK_INTERVAL + 2, name
        assert len(ran) == lookups[name] + checks, (name, ran)


# Each trigger: change(ctx) made on instance B through its pages, returning the response;
# and what the old session gets afterwards ("refused", or its new permission set).
def _reset(ctx):
    return ctx["admin"].submit(f"/admin/users/{ctx['user'].id}/reset-password", {})


def _disable(ctx):
    uid = ctx["user"].id
    return ctx["admin"].submit(f"/admin/users/{uid}", {}, action=f"/admin/users/{uid}/disable")


def _delete(ctx):
    return ctx["admin"].submit(f"/admin/users/{ctx['user'].id}/delete", {"confirm_email": ctx["user"].email})


def _role_change(ctx):
    uid = ctx["user"].id
    return ctx["admin"].submit(f"/admin/users/{uid}", {"roles": ["warehouse_lead"]}, action=f"/admin/users/{uid}/roles")


def _role_permission_change(ctx):
    with ctx["app"].app_context():
        role = role_service.Role.get(role_service.Role.code == "salesperson")
    return ctx["admin"].submit(f"/admin/roles/{role.id}", {"name": role.name, "description": role.description,
                                                           "permissions": ["download_exports"]})


def _password_change(ctx):
    keeper = ctx["instances"].b.client(ctx["keeper"])
    return keeper.submit("/account/password", {"current_password": TEST_PASSWORD, "new_password": NEW_PASSWORD})


TRIGGERS = {
    "password_reset": (_reset, "refused"),
    "disable": (_disable, "refused"),
    "delete": (_delete, "refused"),
    "role_change": (_role_change, {"view_customers", "run_imports", "run_transformations", "download_exports"}),
    "role_permission_change": (_role_permission_change, {"download_exports"}),
    "password_change": (_password_change, "refused"),
}


def _prepare(app, instances):
    admin = make_user(app, role="admin")  # so the user under test is never the last admin
    user = make_user(app, role="salesperson")
    token, keeper = new_session(app, user), new_session(app, user)
    ctx = {"app": app, "instances": instances, "user": user, "token": token, "keeper": keeper,
           "admin": instances.b.client(new_session(app, admin))}
    olds = [instance.client(token) for instance in instances.both]
    for client in olds:  # warm the shared cache from both instances
        assert client.me() == (200, SALESPERSON)
    return ctx, olds


def _change_on_b(trigger, ctx):
    change, _ = TRIGGERS[trigger]
    response = change(ctx)
    assert response.status in (302, 303), (trigger, response.status, response.text[:500])


def _assert_after(trigger, ctx, olds):
    """Once the change has returned: the old session on both instances, and the user's other session."""
    _, expected = TRIGGERS[trigger]
    for client in olds:
        status, permissions = client.me()
        if expected == "refused":
            assert status == 401, client.instance.name
        else:
            assert status == 200 and set(permissions) == expected, (client.instance.name, permissions)
    keeper_status = [instance.client(ctx["keeper"]).me()[0] for instance in ctx["instances"].both]
    if trigger == "password_change":
        assert keeper_status == [200, 200]  # the session that changed the password stays
    elif expected == "refused":
        assert keeper_status == [401, 401]
    else:
        assert keeper_status == [200, 200]  # a permission change ends no session


@pytest.mark.one_mode   # PRIMARY only; the rest of this file is the split-mode subset
@pytest.mark.parametrize("trigger", sorted(TRIGGERS))
def test_revocation_holds_on_both_instances_once_the_change_returns(setup_app, instances, trigger):
    ctx, olds = _prepare(setup_app, instances)
    _change_on_b(trigger, ctx)
    _assert_after(trigger, ctx, olds)


@pytest.mark.one_mode   # PRIMARY only; the rest of this file is the split-mode subset
@pytest.mark.parametrize("trigger", sorted(TRIGGERS))
def test_revocation_survives_a_lookup_that_read_primary_before_the_change(setup_app, instances, trigger):
    """Instance A reads the session from PRIMARY; its cache write is held on the way to Redis while
    instance B makes the change and returns; then the write arrives, and must be refused."""
    ctx, olds = _prepare(setup_app, instances)
    entry = session_cache.entry_key(sessions.hash_token(ctx["token"]))
    redis = open_test_redis()
    redis.delete(entry)  # A's next request misses and reads PRIMARY
    hold = instances.proxies[0].hold(CACHE_WRITE)
    answered = []
    lookup = threading.Thread(target=lambda: answered.append(olds[0].me()))
    lookup.start()
    try:
        hold.wait_held()           # A has read PRIMARY (before the change) and sent its cache write
        assert not redis.exists(entry)
        _change_on_b(trigger, ctx)
    finally:
        hold.release()
        lookup.join(60)
    assert answered == [(200, SALESPERSON)]  # A's answer was read before the change
    assert not redis.exists(entry)           # and its late write was refused
    _assert_after(trigger, ctx, olds)


def test_revoking_one_session_from_the_admin_side(setup_app, instances):
    user = make_user(setup_app, role="salesperson")
    token, other = new_session(setup_app, user), new_session(setup_app, user)
    admin = instances.b.client(new_session(setup_app, make_user(setup_app, role="admin")))
    clients = [instance.client(token) for instance in instances.both]
    assert [c.me()[0] for c in clients] == [200, 200]
    revoked = admin.submit(f"/admin/users/{user.id}", {},
                           action=f"/admin/users/{user.id}/sessions/{sessions.hash_token(token)}/revoke")
    assert revoked.status == 302
    assert [c.me()[0] for c in clients] == [401, 401]
    assert [instance.client(other).me()[0] for instance in instances.both] == [200, 200]


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


def test_concurrent_misses_on_two_instances_make_one_primary_lookup(setup_app, instances):
    """A's first request holds the lookup lock and has read PRIMARY; its cache write is held on
    the way to Redis until requests of the same session on both instances are seen waiting for
    it. They use its entry: one PRIMARY lookup in all."""
    token = new_session(setup_app, make_user(setup_app, role="salesperson"))
    token_hash = sessions.hash_token(token)
    lock = session_cache.lock_key(token_hash).encode()
    waiting = [proxy.watch(b"EXISTS\r\n$%d\r\n%s" % (len(lock), lock)) for proxy in instances.proxies]
    starts = [len(instance.statements()) for instance in instances.both]
    hold = instances.proxies[0].hold(CACHE_WRITE)
    statuses = []

    def request_from(instance):
        statuses.append(instance.client(token).me()[0])

    first = threading.Thread(target=request_from, args=(instances.a,))
    first.start()
    others = [threading.Thread(target=request_from, args=(instance,)) for instance in instances.both
              for _ in range(5)]
    try:
        hold.wait_held()
        assert open_test_redis().exists(session_cache.lock_key(token_hash))
        for thread in others:
            thread.start()
        wait_until(lambda: all(watch.count for watch in waiting), timeout=10, interval=0.002,
                   message="requests on both instances to wait for the lookup in progress")
    finally:
        hold.release()
        for thread in [first, *others]:
            thread.join(30)
    assert statuses == [200] * 11
    lookups = [session_lookups(instance.statements()[begun:]) for instance, begun in zip(instances.both, starts)]
    assert lookups == [1, 0]
