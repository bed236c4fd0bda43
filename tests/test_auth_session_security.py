"""Issue 12, items 9-11: signed cache entries, Redis credentials/TLS and a jobs Redis,
durable invalidations when Redis is unreachable, and `flask sessions end`."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from dataclasses import replace

import pytest
import redis

from handled import create_app
from handled.auth import session_cache, sessions, users
from handled.models import AuditLog, Session
from handled.settings import SettingsError, load_settings
from tests.support.accounts import client_with_token, make_user, new_session, setup_context, sign_in_client
from tests.support.databases import mode_env
from tests.support.environment import ROOT
from tests.support.processes import free_port, run_flask
from tests.support.redis import open_test_redis
from tests.support.servers import PrivateRedis, self_signed_certificate
from tests.support.session_probes import count_primary_statements, session_lookups
from tests.support.waiting import wait_until

pytestmark = pytest.mark.one_mode   # PRIMARY only: the same in both database modes

EVERYTHING = ["manage_users", "manage_roles", "view_system", "view_audit", "run_imports",
              "run_transformations", "download_exports", "view_customers"]


def me(client):
    response = client.get("/api/me")
    return response.status_code, (response.get_json() or {}).get("permissions")


def forge(token_hash: str, user_id: int, email: str) -> None:
    """What someone able to write to Redis would add: an entry granting everything."""
    entry = {"user_id": user_id, "email": email, "name": "Forged", "must_change_password": False,
             "expires_at": time.time() + 3600, "permissions": EVERYTHING}
    open_test_redis().set(f"sess:{token_hash}", json.dumps(entry), ex=600)


# --- item 9: signed cache entries -------------------------------------------------

def test_forged_entry_for_a_real_session_grants_nothing_extra(app, caplog):
    user = make_user(app, role="salesperson")
    client = client_with_token(app, token := new_session(app, user))
    status, granted = me(client)
    assert status == 200 and "manage_users" not in granted
    token_hash = sessions.hash_token(token)
    forge(token_hash, user.id, user.email)
    with caplog.at_level(logging.WARNING, logger="handled.auth"):
        status, permissions = me(client)
    assert status == 200
    assert permissions == granted  # from PRIMARY, not from the forged entry
    failed = [r for r in caplog.records if "signature" in r.getMessage()]
    assert len(failed) == 1 and token not in failed[0].getMessage() and token_hash not in failed[0].getMessage()


def test_forged_entry_for_an_invented_token_is_refused(app):
    user = make_user(app, role="admin")
    token = "an-invented-token-nobody-was-given-0123456789"
    forge(sessions.hash_token(token), user.id, user.email)
    assert me(client_with_token(app, token))[0] == 401


def test_a_genuine_entry_still_hits_the_cache(app):
    user = make_user(app, role="salesperson")
    client = client_with_token(app, new_session(app, user))
    assert me(client)[0] == 200
    raw = open_test_redis().get(f"sess:{sessions.hash_token(client.get_cookie('handled_session').value)}")
    assert raw is not None and b"manage_users" not in raw
    with count_primary_statements() as warm:
        for _ in range(10):
            assert me(client)[0] == 200
    assert session_lookups(warm) == 0


def test_replayed_cache_entry_does_not_outlive_disable(app, settings):
    """Review F2: an entry copied before a revocation and SET back (without a TTL) is refused."""
    user = make_user(app, role="superuser")
    client = client_with_token(app, token := new_session(app, user))
    assert me(client)[0] == 200
    redis_client = open_test_redis()
    key = f"sess:{sessions.hash_token(token)}"
    saved = redis_client.get(key)
    assert saved is not None
    with app.app_context():
        users.set_disabled(setup_context(settings), user.id, True)
    assert me(client)[0] == 401
    redis_client.set(key, saved)  # replayed, and kept with no expiry
    assert me(client_with_token(app, token)) == (401, None)


def test_a_signed_entry_older_than_the_ttl_is_a_miss(app, settings, caplog):
    """An entry whose signed write time is older than SESSION_CACHE_TTL is not trusted, even when
    it is still in Redis (SET back without a TTL) and the epoch has not moved."""
    user = make_user(app, role="salesperson")
    token = new_session(app, user)
    token_hash = sessions.hash_token(token)
    entry = {"user_id": user.id, "email": user.email, "name": "Old", "must_change_password": False,
             "expires_at": time.time() + 3600, "permissions": EVERYTHING}
    key = session_cache.signing_key(settings.secret_key)
    redis_client = open_test_redis()
    epoch = (redis_client.get(session_cache.EPOCH_KEY) or b"0").decode()
    old = session_cache.seal(key, token_hash, entry, epoch, written_at=time.time() - settings.session_cache_ttl - 60)
    redis_client.set(f"sess:{token_hash}", old)
    with caplog.at_level(logging.WARNING, logger="handled.auth"):
        status, permissions = me(client_with_token(app, token))
    assert status == 200 and "manage_users" not in permissions  # read from PRIMARY
    refused = [r.getMessage() for r in caplog.records if "older than" in r.getMessage()]
    assert len(refused) == 1 and token_hash not in refused[0]


def test_an_entry_read_as_redis_expires_it_is_still_a_hit(app, settings):
    """The stamp is taken just before the SET that starts the TTL: an entry a little past
    SESSION_CACHE_TTL by its stamp, still in Redis, is genuine and hits without a warning."""
    user = make_user(app, role="salesperson")
    client = client_with_token(app, token := new_session(app, user))
    assert me(client)[0] == 200
    token_hash = sessions.hash_token(token)
    redis_client = open_test_redis()
    epoch = (redis_client.get(session_cache.EPOCH_KEY) or b"0").decode()
    entry = json.loads(redis_client.get(f"sess:{token_hash}").partition(b".")[2])["entry"]
    late = session_cache.seal(session_cache.signing_key(settings.secret_key), token_hash, entry, epoch,
                              written_at=time.time() - settings.session_cache_ttl - 1)
    redis_client.set(f"sess:{token_hash}", late, ex=5)
    with count_primary_statements() as warm:
        assert me(client)[0] == 200
    assert session_lookups(warm) == 0


# --- item 9: Redis credentials, TLS, redaction, a separate jobs Redis --------------

@pytest.fixture
def locked_redis(tmp_path):
    """A private redis-server with requirepass and an ACL user `handled`."""
    server = PrivateRedis(tmp_path / "redis")
    server.base.mkdir(parents=True)
    server.process = subprocess.Popen(
        ["redis-server", "--port", str(server.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(server.base), "--requirepass", "default-pass-123"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    admin = redis.Redis(port=server.port, password="default-pass-123", socket_connect_timeout=0.2)
    wait_until(lambda: _pings(admin), timeout=10, message="the locked redis-server to start")
    admin.execute_command("ACL", "SETUSER", "handled", "on", ">handled-pass-456", "~*", "&*", "+@all")
    yield server
    server.stop()


def _pings(client) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


@pytest.mark.flow("TLS")
def test_redis_with_an_acl_user_works_and_a_wrong_password_is_one_sentence(settings, locked_redis):
    right = f"redis://handled:handled-pass-456@127.0.0.1:{locked_redis.port}/0"
    app = create_app(replace(settings, redis_url=right))
    user = make_user(app, role="salesperson")
    client = client_with_token(app, token := new_session(app, user))
    assert me(client)[0] == 200
    seen = redis.Redis.from_url(right)
    assert seen.exists(f"sess:{sessions.hash_token(token)}")  # cached in the locked Redis
    assert app.test_client().get("/healthz").get_json()["redis"]["ok"] is True

    wrong = f"redis://handled:not-the-password@127.0.0.1:{locked_redis.port}/0"
    bad = create_app(replace(settings, redis_url=wrong))
    assert me(client_with_token(bad, token))[0] == 200  # PRIMARY still answers
    assert bad.test_client().get("/healthz").get_json()["redis"] == {"ok": False}   # anonymous: no details
    error = json.loads(bad.test_cli_runner().invoke(args=["health"]).output)["redis"]["error"]
    assert "not-the-password" not in error and "handled-pass" not in error
    assert "\n" not in error and "REDIS_URL" in error and "password" in error, error
    assert "redis://handled:***@127.0.0.1" in error


def test_redis_urls_are_redacted_in_settings_errors(settings):
    env = mode_env("single", settings.primary.dbname, REDIS_URL="http://user:sekrit-pw@host:6379/0")
    with pytest.raises(SettingsError) as refused:
        load_settings(env)
    assert "sekrit-pw" not in str(refused.value) and "***" in str(refused.value)
    env = mode_env("single", settings.primary.dbname, JOBS_REDIS_URL="ftp://user:sekrit-pw@host/1")
    with pytest.raises(SettingsError) as refused:
        load_settings(env)
    assert "sekrit-pw" not in str(refused.value)
    kept = load_settings(mode_env("single", settings.primary.dbname, REDIS_URL="rediss://handled:sekrit-pw@host:6380/2"))
    assert kept.redis_url == "rediss://handled:sekrit-pw@host:6380/2"  # whole, for redis-py
    assert "sekrit-pw" not in repr(kept)


@pytest.mark.flow("TLS")
def test_rediss_tls_url_reaches_a_tls_redis(settings, tmp_path):
    cert, key = self_signed_certificate(tmp_path / "tls")
    port = free_port()
    process = subprocess.Popen(
        ["redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path), "--tls-cert-file", str(cert), "--tls-key-file", str(key),
         "--tls-auth-clients", "no", "--requirepass", "tls-pass-789"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"rediss://:tls-pass-789@127.0.0.1:{port}/0?ssl_ca_certs={cert}&ssl_cert_reqs=required"
        wait_until(lambda: _pings(redis.Redis.from_url(url, socket_connect_timeout=0.3)), timeout=10,
                   message="the TLS redis-server to start")
        app = create_app(replace(settings, redis_url=url))
        user = make_user(app, role="salesperson")
        client = client_with_token(app, token := new_session(app, user))
        assert me(client)[0] == 200
        assert redis.Redis.from_url(url).exists(f"sess:{sessions.hash_token(token)}")
    finally:
        process.kill()
        process.wait(10)


def test_jobs_go_to_the_jobs_redis(settings, tmp_path):
    jobs_redis = PrivateRedis(tmp_path / "jobs").start()
    try:
        app = create_app(replace(settings, jobs_redis_url=jobs_redis.url))
        from handled.jobs import queue
        with app.app_context():
            job_id = queue.enqueue("export", "transformation", ["nothing"],
                                   ctx=setup_context(app.config["HANDLED_SETTINGS"]), description="where does it go")
            assert queue.job_status(job_id)["status"] == "queued"
        assert redis.Redis.from_url(jobs_redis.url).exists(f"rq:job:{job_id}")
        assert not open_test_redis().exists(f"rq:job:{job_id}")
    finally:
        jobs_redis.stop()


# --- item 10: invalidations made while Redis is unreachable are durable -------------

def _env_for(settings, **extra):
    return mode_env(settings.mode, settings.primary.dbname, settings.data.dbname if settings.split_db_mode else None,
                    PYTHONPATH=str(ROOT), PATH=os.environ["PATH"], **extra)


def test_revocation_from_a_process_without_redis_reaches_the_web_instance(settings, tmp_path):
    web = create_app(settings)
    user = make_user(web, role="salesperson")
    client = client_with_token(web, new_session(web, user))
    assert me(client)[0] == 200  # cached in Redis, which the web instance reaches
    dead = f"redis://127.0.0.1:{free_port()}/0"
    result = run_flask("users", "disable", user.email, env=_env_for(settings, REDIS_URL=dead), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    revoked_at = time.monotonic()
    wait_until(lambda: me(client)[0] == 401, timeout=2.0, message="the web instance to refuse the revoked session")
    assert time.monotonic() - revoked_at < settings.session_cache_ttl
    wait_until(lambda: _pending_rows(web) == 0, timeout=2.0, message="the pending invalidation to be cleared")
    assert "pending" in result.stdout.lower()  # the operator was told


def _pending_rows(app) -> int:
    from handled.db import primary_db
    with app.app_context():
        return primary_db.execute_sql("SELECT count(*) FROM config.pending_invalidations").fetchone()[0]


def test_pending_invalidations_are_flashed_and_counted_on_the_system_page(settings):
    dead = replace(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    app = create_app(dead)
    admin = sign_in_client(app, make_user(app, role="admin"))
    user = make_user(app, role="salesperson")
    response = admin.post(f"/admin/users/{user.id}/disable", follow_redirects=True)
    assert response.status_code == 200
    assert "pending" in response.get_data(as_text=True).lower()
    page = admin.get("/system").get_data(as_text=True)
    assert "1 session invalidation" in page


@pytest.mark.flow("Rotating SECRET_KEY")
def test_rotating_secret_key_signs_nobody_out_and_rereads_old_cache_entries_once(app, settings, caplog):
    """OPS_RUNBOOK "Rotating SECRET_KEY": the same session works after the reload; its cache entry,
    signed with the old key, is refused once (logged), read from PRIMARY and cached again; a form
    opened before fails its CSRF check once and works when reloaded; `sessions end --all` ends it."""
    before = app   # made before the test body, so caplog sees handled's own (non-propagating) logger
    user = make_user(before, role="salesperson")
    browser = sign_in_client(before, user)
    assert me(browser)[0] == 200                             # cached, signed with the old key
    assert browser.get("/account").status_code == 200        # a page with forms, opened before
    old_form = {"csrf_token": csrf_token_of(browser.get("/account").get_data(as_text=True))}

    after = create_app(replace(settings, secret_key="the-rotated-secret-key-0123456789abcdef"))
    rotated = carry_cookies(browser, after.test_client())   # the same browser, after the reload
    with caplog.at_level(logging.WARNING, logger="handled.auth"):
        with count_primary_statements() as first:
            assert me(rotated) == (200, ["download_exports", "view_customers"])   # nobody signed out
        with count_primary_statements() as second:
            assert me(rotated)[0] == 200
    assert session_lookups(first) == 1 and session_lookups(second) == 0   # re-cached with the new key
    assert [r for r in caplog.records if "failed its signature check" in r.getMessage()] != []

    refused = rotated.post("/account/sessions/end-others", data=old_form)
    assert refused.status_code == 400                        # the form of before the rotation, once
    reloaded = {"csrf_token": csrf_token_of(rotated.get("/account").get_data(as_text=True))}
    assert rotated.post("/account/sessions/end-others", data=reloaded).status_code == 302

    ended = after.test_cli_runner().invoke(args=["sessions", "end", "--all"])
    assert ended.exit_code == 0, ended.output
    assert me(rotated)[0] == 401


def csrf_token_of(page: str) -> str:
    import re
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def carry_cookies(source, target):
    """``target`` (a test client of another app) holding ``source``'s cookies, as the same browser."""
    for cookie in source._cookies.values():
        target.set_cookie(cookie.key, cookie.value, domain=cookie.domain, path=cookie.path)
    return target


# --- item 11: flask sessions end ----------------------------------------------------

@pytest.mark.flow("Restore")
def test_sessions_end_all_ends_every_session_and_is_audited(app, runner):
    users_ = [make_user(app, role="salesperson") for _ in range(3)]
    clients = [client_with_token(app, new_session(app, u)) for u in users_]
    assert all(me(c)[0] == 200 for c in clients)
    result = runner.invoke(args=["sessions", "end", "--all"])
    assert result.exit_code == 0, result.output
    assert "ended 3 session(s)" in result.output
    assert all(me(c)[0] == 401 for c in clients)
    with app.app_context():
        assert Session.select().count() == 0
        assert AuditLog.select().where(AuditLog.action == "session.end_all").count() == 1
    assert not [k for k in open_test_redis().scan_iter("sess:*")]


def test_sessions_end_user_ends_only_that_users_sessions(app, runner):
    target, other = make_user(app, role="salesperson"), make_user(app, role="salesperson")
    mine = [client_with_token(app, new_session(app, target)) for _ in range(2)]
    theirs = client_with_token(app, new_session(app, other))
    assert all(me(c)[0] == 200 for c in mine + [theirs])
    result = runner.invoke(args=["sessions", "end", "--user", target.email])
    assert result.exit_code == 0, result.output
    assert f"ended 2 session(s) of {target.email}" in result.output
    assert all(me(c)[0] == 401 for c in mine) and me(theirs)[0] == 200
    with app.app_context():
        row = AuditLog.get(AuditLog.action == "session.end_user")
        assert row.target_label == target.email and row.details["sessions_ended"] == 2
    result = runner.invoke(args=["sessions", "end"])
    assert result.exit_code != 0 and "--all or --user" in result.output
    result = runner.invoke(args=["sessions", "end", "--user", "nobody@example.test"])
    assert result.exit_code == 1 and "nobody@example.test" in result.output


def test_sessions_end_all_without_redis_is_pending_then_applied_by_the_web_instance(settings, tmp_path):
    web = create_app(settings)
    signed_in = [client_with_token(web, new_session(web, make_user(web, role="salesperson"))) for _ in range(2)]
    assert all(me(c)[0] == 200 for c in signed_in)  # cached
    dead = f"redis://127.0.0.1:{free_port()}/0"
    result = run_flask("sessions", "end", "--all", env=_env_for(settings, REDIS_URL=dead), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "ended 2 session(s) of every user" in result.stdout and "pending" in result.stdout
    assert _pending_rows(web) == 1
    wait_until(lambda: all(me(c)[0] == 401 for c in signed_in), timeout=2.0,
               message="the web instance to refuse every ended session")
    wait_until(lambda: _pending_rows(web) == 0, timeout=2.0, message="the pending invalidation to be cleared")
    assert not list(open_test_redis().scan_iter("sess:*"))
