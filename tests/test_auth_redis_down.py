"""Redis stops (a private redis-server the test kills): sign-in checks fall back to
PRIMARY, revoked sessions stay refused, nothing fails with a 500, /healthz says degraded."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import replace

import pytest

from handled import create_app
from handled.auth import session_cache, users
from tests.support.accounts import TEST_PASSWORD, client_with_token, csrf_token, make_user, new_session, setup_context
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


def test_change_while_redis_hangs_is_bounded_by_the_cache_ttl(settings, private_redis):
    """Redis keeps its data but does not answer while the change is made (SIGSTOP)."""
    ttl = 2
    app = create_app(replace(settings, redis_url=private_redis.url, session_cache_ttl=ttl))
    make_user(app, role="admin")
    user = make_user(app, role="salesperson")
    token = new_session(app, user)
    client = client_with_token(app, token)
    assert client.get("/api/me").status_code == 200

    os.kill(private_redis.process.pid, signal.SIGSTOP)
    try:
        with app.test_request_context():
            users.set_disabled(context_of(app), user.id, True)  # PRIMARY committed; the cache invalidation times out
        changed_at = time.monotonic()
        assert client.get("/api/me").status_code == 401  # this process skips the unreachable Redis
    finally:
        os.kill(private_redis.process.pid, signal.SIGCONT)

    # This process replays its failed invalidation before trusting the cache again:
    session_cache._skip_until = 0.0
    assert client.get("/api/me").status_code == 401

    # Another worker never saw the failure: it may serve the old entry, but only
    # until the entry's TTL runs out (the documented bound).
    with app.test_request_context():
        users.set_disabled(context_of(app), user.id, False)
    token2 = new_session(app, user)
    other_worker = client_with_token(app, token2)
    assert other_worker.get("/api/me").status_code == 200
    os.kill(private_redis.process.pid, signal.SIGSTOP)
    try:
        with app.test_request_context():
            users.set_disabled(context_of(app), user.id, True)
        changed_at = time.monotonic()
    finally:
        os.kill(private_redis.process.pid, signal.SIGCONT)
    session_cache.reset_process_state()  # forget the pending replay, as a different process would not have it
    wait_until(lambda: other_worker.get("/api/me").status_code == 401,
               timeout=changed_at + ttl + 0.5 - time.monotonic(), message="the cached entry's TTL to run out")
