"""Redis stops (a private redis-server the test kills): sign-in checks fall back to
PRIMARY, revoked sessions stay refused, nothing fails with a 500, /healthz says degraded."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import replace

import pytest

from handled import create_app
from handled.auth import session_cache, sessions, users
from tests.support.accounts import TEST_PASSWORD, client_with_token, csrf_token, make_user, new_session, setup_context
from tests.support.instances import Instance
from tests.support.servers import PrivateRedis
from tests.support.waiting import wait_until

pytestmark = pytest.mark.one_mode   # PRIMARY only: the same in both database modes


@pytest.fixture
def private_redis(tmp_path):
    server = PrivateRedis(tmp_path / "redis").start()
    yield server
    server.stop()


def context_of(app):
    """The set-up context for changes made on ``app``."""
    return setup_context(app.config["HANDLED_SETTINGS"])


@pytest.mark.flow("Redis down")
def test_requests_fall_back_to_primary_and_revocations_hold_when_redis_is_killed(settings, private_redis):
    app = create_app(replace(settings, redis_url=private_redis.url))
    admin = make_user(app, role="admin")
    user = make_user(app, role="salesperson")
    token, admin_token = new_session(app, user), new_session(app, admin)
    client, admin_client = client_with_token(app, token), client_with_token(app, admin_token)
    assert client.get("/api/me").status_code == 200  # cached in the private Redis

    private_redis.stop()
    assert client.get("/api/me").status_code == 200  # authenticated by PRIMARY
    assert client.get("/account").status_code == 200
    health = app.test_client().get("/healthz")
    assert health.status_code == 200 and health.get_json()["status"] == "degraded"

    with app.test_request_context():
        users.set_disabled(context_of(app), user.id, True)  # made while Redis is down
    assert client.get("/api/me").status_code == 401
    assert client.get("/account").status_code == 302
    assert admin_client.get("/api/me").status_code == 200

    fresh = app.test_client()  # signing in still works, via PRIMARY
    response = fresh.post("/login", data={"email": admin.email, "password": TEST_PASSWORD,
                                          "csrf_token": csrf_token(fresh)})
    assert response.status_code == 302
    assert fresh.get("/api/me").get_json()["email"] == admin.email


@pytest.mark.flow("Redis down")
def test_change_while_redis_hangs_is_bounded_by_the_cache_ttl(settings, private_redis, tmp_path):
    """Redis hangs (SIGSTOP) while a user is disabled, then dies and comes back from its saved data:
    the invalidation the change sent is lost for real. Another instance (a process of its own that
    saw no failure) still finds the old entry in Redis, and refuses the session once it checks the
    invalidations PRIMARY recorded (PENDING_CHECK_INTERVAL), long before the entry's TTL.

    When Redis loses an invalidation that did land (restarted from a snapshot taken before it),
    nothing was recorded: the old entry is served until SESSION_CACHE_TTL from its write, and
    refused after it: the documented worst case."""
    ttl = 6
    changer = create_app(replace(settings, redis_url=private_redis.url, session_cache_ttl=ttl))
    make_user(changer, role="admin")
    user = make_user(changer, role="salesperson")
    other = Instance(settings, tmp_path / "other", "other", REDIS_URL=private_redis.url, SESSION_CACHE_TTL=ttl)
    try:
        token = new_session(changer, user)
        client = other.client(token)
        assert client.me()[0] == 200                      # the other instance cached the session
        entry = session_cache.entry_key(sessions.hash_token(token))
        private_redis.save()
        epoch = private_redis.client().get(session_cache.EPOCH_KEY)

        os.kill(private_redis.process.pid, signal.SIGSTOP)
        try:
            with changer.test_request_context():
                users.set_disabled(context_of(changer), user.id, True)  # PRIMARY commits; Redis does not answer
                left_pending = session_cache.take_pending_notice()
        finally:
            private_redis.crash_and_restart()             # what it was sent while hung dies with it
        assert left_pending == 1
        with changer.app_context():
            assert session_cache.pending_count() == 1
        restarted = private_redis.client()
        assert restarted.exists(entry) and restarted.get(session_cache.EPOCH_KEY) == epoch  # lost for real

        wait_until(lambda: client.me()[0] == 401, timeout=session_cache.PENDING_CHECK_INTERVAL + 2,
                   message="the other instance to replay the invalidation PRIMARY recorded")
        # Refused by the replay, not by the entry running out: the epoch moved and the row is gone.
        assert restarted.get(session_cache.EPOCH_KEY) != epoch and not restarted.exists(entry)
        with changer.app_context():
            assert session_cache.pending_count() == 0

        # An invalidation Redis applied, then lost: nothing pending, bounded by the TTL alone.
        with changer.test_request_context():
            users.set_disabled(context_of(changer), user.id, False)
        client = other.client(new_session(changer, user))
        assert client.me()[0] == 200
        written = time.monotonic()
        private_redis.save()
        with changer.test_request_context():
            users.set_disabled(context_of(changer), user.id, True)
            assert session_cache.take_pending_notice() == 0   # it reached Redis
        assert client.me()[0] == 401
        private_redis.crash_and_restart()                  # back from the snapshot before the change
        assert client.me()[0] == 200                       # before the bound: the old entry is back
        wait_until(lambda: client.me()[0] == 401, timeout=written + ttl + 1 - time.monotonic(),
                   message="the restored entry to outlive SESSION_CACHE_TTL no longer")
    finally:
        other.stop()
        session_cache.reset_process_state()
