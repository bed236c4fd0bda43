"""Sign-in: strangers cannot lock staff out (issue 12, items 5 to 8).

5. The client address behind a trusted proxy (TRUSTED_PROXY_HOPS), never a forged header.
6. Throttling per (account, address) and per address, a growing delay per account
   instead of a hard lock, counted before the password check, in PRIMARY while Redis is down.
7. A sign-in racing a password change or reset never yields a working session, and a
   pending rehash never writes the old password's hash over the new one.
8. Unknown accounts are not written as the actor; throttled attempts make one audit row.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import replace
from datetime import timedelta

import pytest

from handled import create_app
from handled.auth import login, passwords, session_cache, sessions, throttle, users
from handled.auth.roles import all_permissions
from handled.auth.web import COOKIE_NAME
from handled.context import Actor, Context
from handled.db import release_connections
from handled.models import AuditLog, LoginThrottle, Session, User
from handled.timeutil import utcnow
from tests.support.accounts import TEST_PASSWORD, csrf_token, make_user, setup_context
from tests.support.databases import connect
from tests.support.servers import PrivateRedis

pytestmark = pytest.mark.one_mode   # PRIMARY only: the same in both database modes

WRONG = "not the password at all"
THROTTLED_ACCOUNT = "Too many failed sign-ins for this account"
THROTTLED_ADDRESS = "Too many failed sign-ins from your network address"
THROTTLED_ADDRESS_OR_PAIR = "from your network address"


def post_login(client, email, password, address=None, forwarded_for=None):
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    environ = {"REMOTE_ADDR": address} if address else {}
    return client.post("/login", data={"email": email, "password": password, "csrf_token": csrf_token(client)},
                       headers=headers, environ_base=environ)


def visitor(settings, address: str) -> Context:
    """The context of an anonymous visitor at the sign-in form from ``address``."""
    return Context(settings, Actor.anonymous(address))


def attempt(settings, email, password, address):
    """One sign-in through the service: the token, or the refusal's message."""
    try:
        return login.sign_in(visitor(settings, address), email, password, "pytest")[1]
    except login.LoginRefused as refused:
        return str(refused)


def audit_rows(app, action):
    with app.app_context():
        return list(AuditLog.select().where(AuditLog.action == action).order_by(AuditLog.id))


@pytest.fixture
def append_only_audit_log(settings):
    """config.audit_log refuses UPDATE and DELETE for the test, as the least-privilege roles make it."""
    conn = connect(settings.primary)
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'config.audit_log'::regclass "
                    "AND NOT tgisinternal")
        if cur.fetchone()[0]:  # a migration made it append-only already
            conn.close()
            yield
            return
        cur.execute("CREATE FUNCTION config.test_refuse_change() RETURNS trigger LANGUAGE plpgsql AS "
                    "$$ BEGIN RAISE EXCEPTION 'config.audit_log is append-only'; END $$; "
                    "CREATE TRIGGER test_append_only BEFORE UPDATE OR DELETE ON config.audit_log "
                    "FOR EACH ROW EXECUTE FUNCTION config.test_refuse_change()")
    yield
    with conn.cursor() as cur:
        cur.execute("DROP TRIGGER test_append_only ON config.audit_log; DROP FUNCTION config.test_refuse_change()")
    conn.close()


@pytest.fixture
def private_redis(tmp_path):
    server = PrivateRedis(tmp_path / "redis").start()
    yield server
    server.stop()


# --- 5. the client address behind a proxy -----------------------------------------------------

def test_without_trusted_proxies_a_forged_forwarded_for_changes_nothing(settings):
    app = create_app(settings)
    assert settings.trusted_proxy_hops == 0
    user = make_user(app, role="salesperson")
    client = app.test_client()
    post_login(client, user.email, WRONG, forwarded_for="203.0.113.66")
    assert post_login(client, user.email, TEST_PASSWORD, forwarded_for="203.0.113.66").status_code == 302
    assert [r.ip for r in audit_rows(app, "auth.sign_in_failed")] == ["127.0.0.1"]
    assert [r.ip for r in audit_rows(app, "auth.sign_in")] == ["127.0.0.1"]
    with app.app_context():
        assert [s.ip for s in Session.select()] == ["127.0.0.1"]


@pytest.mark.flow("Environment")
def test_one_trusted_hop_gives_each_client_behind_the_proxy_its_own_address(settings):
    app = create_app(replace(settings, trusted_proxy_hops=1, login_max_failures_per_ip=3))
    user = make_user(app, role="salesperson")
    guesser, owner = app.test_client(), app.test_client()
    for n in range(3):
        post_login(guesser, f"guess{n}@example.test", WRONG, forwarded_for="203.0.113.5")
    refused = post_login(guesser, user.email, TEST_PASSWORD, forwarded_for="203.0.113.5")
    assert THROTTLED_ADDRESS in refused.get_data(as_text=True)
    # The owner comes through the same nginx (127.0.0.1) from another address:
    assert post_login(owner, user.email, TEST_PASSWORD, forwarded_for="198.51.100.7").status_code == 302
    assert {r.ip for r in audit_rows(app, "auth.sign_in_failed")} == {"203.0.113.5"}
    assert [r.ip for r in audit_rows(app, "auth.sign_in")] == ["198.51.100.7"]
    with app.app_context():
        assert [s.ip for s in Session.select()] == ["198.51.100.7"]
    assert "198.51.100.7" in owner.get("/account", headers={"X-Forwarded-For": "198.51.100.7"}).get_data(as_text=True)


def test_a_spoofed_left_most_entry_is_not_used_with_one_hop(settings):
    app = create_app(replace(settings, trusted_proxy_hops=1))
    user = make_user(app, role="salesperson")
    client = app.test_client()
    # The client sent "X-Forwarded-For: 10.0.0.1"; nginx appended the address it saw.
    assert post_login(client, user.email, TEST_PASSWORD, forwarded_for="10.0.0.1, 198.51.100.8").status_code == 302
    assert [r.ip for r in audit_rows(app, "auth.sign_in")] == ["198.51.100.8"]


# --- 6. no lock-out of the owner ------------------------------------------------------------------

@pytest.mark.flow("Too many failed sign-ins")
def test_failures_from_one_address_do_not_lock_the_owner_out_from_another(app, settings):
    user = make_user(app, role="salesperson")
    attacker, owner = app.test_client(), app.test_client()
    for _ in range(settings.login_max_failures_per_account):
        post_login(attacker, user.email, WRONG, address="192.0.2.66")
    refused = post_login(attacker, user.email, TEST_PASSWORD, address="192.0.2.66")
    assert refused.status_code == 401 and THROTTLED_ACCOUNT in refused.get_data(as_text=True)
    # an administrator can Unlock the account now (the user page), so the message offers that first
    assert "ask an administrator to unlock your account (or reset your password)." in refused.get_data(as_text=True)
    assert post_login(owner, user.email, TEST_PASSWORD, address="198.51.100.20").status_code == 302


def test_failures_from_many_addresses_slow_the_account_with_a_growing_capped_delay(app, settings, monkeypatch):
    settings = replace(settings, login_account_delay_after=3, login_account_delay_max=4)
    user = make_user(app, role="salesperson")
    clock = [1_000_000.0]
    monkeypatch.setattr(throttle, "now", lambda: clock[0])
    addresses = (f"192.0.2.{n}" for n in range(1, 100))
    for _ in range(3):  # up to the threshold: no delay at all
        assert attempt(settings, user.email, WRONG, next(addresses)) == login.BAD_CREDENTIALS
    delays = []
    for _ in range(5):
        waited = 0.0
        while THROTTLED_ACCOUNT in (answer := attempt(settings, user.email, WRONG, next(addresses))):
            assert "second" in answer
            clock[0] += 0.5
            waited += 0.5
        assert answer == login.BAD_CREDENTIALS
        delays.append(waited)
    assert delays == [1.0, 2.0, 4.0, 4.0, 4.0]  # doubles, capped at LOGIN_ACCOUNT_DELAY_MAX
    assert THROTTLED_ACCOUNT in attempt(settings, user.email, TEST_PASSWORD, "198.51.100.20")
    clock[0] += 4
    token = attempt(settings, user.email, TEST_PASSWORD, "198.51.100.20")  # a new place waits 4 s at most
    assert sessions.authenticate(settings, token)["user_id"] == user.id


@pytest.mark.parametrize("owner_is", ["signed in there", "signed in there before"])
def test_the_account_delay_does_not_hold_back_the_owners_address(app, settings, monkeypatch, owner_is):
    """A stranger guessing as often as the delay lets them cannot keep the owner out: an
    address the account signed in from (a live session, or a past sign-in) is not delayed."""
    settings = replace(settings, login_account_delay_after=3, login_account_delay_max=60)
    user = make_user(app, role="salesperson")
    assert sessions.authenticate(settings, attempt(settings, user.email, TEST_PASSWORD, "198.51.100.40"))
    if owner_is == "signed in there before":
        with app.app_context():
            Session.delete().execute()  # signed out, or the session expired and was purged
    monkeypatch.setattr(throttle, "now", lambda: 3_000_000.0)
    for n in range(3):
        attempt(settings, user.email, WRONG, f"192.0.2.{n + 1}")
    assert THROTTLED_ACCOUNT in attempt(settings, user.email, WRONG, "192.0.2.9")
    token = attempt(settings, user.email, TEST_PASSWORD, "198.51.100.40")  # no wait
    assert sessions.authenticate(settings, token)["user_id"] == user.id


@pytest.mark.flow("Too many failed sign-ins")
def test_an_admin_password_reset_clears_the_accounts_counters(app, settings):
    user = make_user(app, role="salesperson")
    for _ in range(settings.login_max_failures_per_account):
        attempt(settings, user.email, WRONG, "192.0.2.66")
    assert THROTTLED_ACCOUNT in attempt(settings, user.email, TEST_PASSWORD, "192.0.2.66")
    with app.test_request_context():
        temporary = users.reset_password(setup_context(settings), user.id)
    token = attempt(settings, user.email, temporary, "192.0.2.66")
    assert sessions.authenticate(settings, token)["user_id"] == user.id


@pytest.mark.parametrize("counted_in", ["redis", "primary"])
def test_an_administrator_sees_the_throttle_and_unlocks_the_account(settings, monkeypatch, counted_in,
                                                                      private_redis):
    """The user page's status says what holds sign-in back (the account's delay, the addresses
    refused for it) from where the throttle counts; Unlock forgets it all, audited with what it
    forgot; the users list's "locked" filter finds the account until then."""
    settings = replace(settings, login_account_delay_after=3, login_max_failures_per_account=2,
                       redis_url=private_redis.url)
    app = create_app(settings)
    user = make_user(app, role="salesperson")
    bystander = make_user(app, role="salesperson")
    admin = make_user(app, role="admin")
    if counted_in == "primary":
        private_redis.stop()
    clock = [7_000_000.0]
    monkeypatch.setattr(throttle, "now", lambda: clock[0])
    attempt(settings, bystander.email, WRONG, "192.0.2.50")     # one failure: not throttled
    with app.app_context():
        assert not throttle.status(settings, user.email).throttled
        for address in ("192.0.2.66", "192.0.2.66", "192.0.2.67"):
            assert attempt(settings, user.email, WRONG, address) == login.BAD_CREDENTIALS
        clock[0] += 0.25
        status = throttle.status(settings, user.email)
        assert (status.throttled, status.failures, status.delay, status.wait) == (True, 3, 1.0, 0.75)
        assert status.refused_addresses == ("192.0.2.66",) and status.counted_in == counted_in
        assert status.clears_at.timestamp() == pytest.approx(7_000_000.0 + settings.login_throttle_window, abs=2)
        assert not throttle.status(settings, bystander.email).throttled
        assert users.throttled_user_ids(settings) == {user.id}
        assert [u.email for u in users.page_of_users(state="locked", settings=settings).users] == [user.email]
        assert THROTTLED_ADDRESS_OR_PAIR in attempt(settings, user.email, TEST_PASSWORD, "192.0.2.66")

        everything = frozenset(p.code for p in all_permissions())
        before = users.unlock_user(Context(settings, Actor(id=admin.id, email=admin.email, address="10.1.1.1",
                                                           permissions=everything)), user.id)
        assert replace(before, clears_at=None) == replace(status, clears_at=None)
        after = throttle.status(settings, user.email)
        assert (after.throttled, after.failures, after.refused_addresses) == (False, 0, ())
        assert users.page_of_users(state="locked", settings=settings).users == []
        assert throttle.status(settings, bystander.email).failures == 1      # only that account's counters
    (row,) = audit_rows(app, "user.unlock")
    assert (row.actor_email, row.target_id, row.target_label) == (admin.email, str(user.id), user.email)
    assert row.details == {"failures": 3, "throttled": True, "refused_addresses": ["192.0.2.66"]}
    token = attempt(settings, user.email, TEST_PASSWORD, "192.0.2.66")   # the refused address gets in now
    assert sessions.authenticate(settings, token)["user_id"] == user.id


class Stranger:
    """Guesses at one account every time they are called, moving to the next of their
    addresses whenever one is refused for its network address: what a patient stranger
    with a handful of addresses does to keep the account's delay going."""

    def __init__(self, app, email, addresses=59):
        self.app, self.email, self.addresses, self.next = app, email, addresses, 0

    def guess(self):
        for _ in range(self.addresses):
            address = f"198.51.100.{self.next + 1}"
            if THROTTLED_ADDRESS_OR_PAIR not in post_login(self.app.test_client(), self.email, WRONG,
                                                            address=address).get_data(as_text=True):
                return
            self.next = (self.next + 1) % self.addresses


@pytest.mark.parametrize("owner_at", ["10.0.0.1", "203.0.113.200"], ids=["usual machine", "new machine"])
def test_owner_gets_in_after_a_password_reset_while_a_stranger_keeps_guessing(app, settings, monkeypatch, owner_at):
    """Security review F4: the owner asks an administrator to reset their password (as the
    throttle's message tells them) while a stranger keeps the account's delay going; the
    owner, obeying every "Wait", gets in with the temporary password from their usual
    machine or from one they never used."""
    owner = make_user(app, role="salesperson")
    clock = [time.time()]
    monkeypatch.setattr(throttle, "now", lambda: clock[0])
    assert post_login(app.test_client(), owner.email, TEST_PASSWORD, address="10.0.0.1").status_code == 302
    stranger = Stranger(app, owner.email)
    for _ in range(settings.login_account_delay_after + 2):
        stranger.guess()
    with app.test_request_context():
        temporary = users.reset_password(setup_context(settings), owner.id)
    for _ in range(settings.login_account_delay_after + 2):
        stranger.guess()
    refused, next_try = [], clock[0] + 5
    for _ in range(20 * 60):  # twenty minutes, the stranger guessing every second
        clock[0] += 1
        stranger.guess()
        if clock[0] < next_try:
            continue
        response = post_login(app.test_client(), owner.email, temporary, address=owner_at)
        if response.status_code == 302:
            break
        answer = response.get_data(as_text=True)
        refused.append(re.sub(r"\s+", " ", re.search(r"Too many[^<]*|The email[^<]*", answer).group(0)))
        wait = re.search(r"Wait (\d+) second", answer)
        next_try = clock[0] + (int(wait.group(1)) if wait else 60)
    assert response.status_code == 302, f"owner refused {len(refused)} times in 20 minutes: {refused[-1:]}"


def test_a_password_reset_does_not_forget_the_owners_usual_machines(app, settings, monkeypatch):
    """A reset clears the failure counters, not the addresses the owner signed in from: after
    signing in with the temporary password somewhere new, their usual machine is still theirs."""
    settings = replace(settings, login_account_delay_after=3)
    user = make_user(app, role="salesperson")
    assert sessions.authenticate(settings, attempt(settings, user.email, TEST_PASSWORD, "198.51.100.40"))
    with app.test_request_context():
        temporary = users.reset_password(setup_context(settings), user.id)
    assert sessions.authenticate(settings, attempt(settings, user.email, temporary, "203.0.113.41"))
    monkeypatch.setattr(throttle, "now", lambda: 4_000_000.0)
    for n in range(3):
        attempt(settings, user.email, WRONG, f"192.0.2.{n + 1}")
    assert THROTTLED_ACCOUNT in attempt(settings, user.email, WRONG, "192.0.2.9")
    token = attempt(settings, user.email, temporary, "198.51.100.40")  # the usual machine: no wait
    assert THROTTLED_ACCOUNT not in token, token
    assert sessions.authenticate(settings, token)["user_id"] == user.id


def test_an_unused_temporary_password_is_still_bound_by_the_address_limits_and_only_until_used(
        app, settings, monkeypatch):
    """What the exemption does not give: a stranger guessing the temporary password is still
    refused per account and address, and once the owner has used it the delay is back."""
    settings = replace(settings, login_account_delay_after=3)
    user = make_user(app, role="salesperson")
    with app.test_request_context():
        temporary = users.reset_password(setup_context(settings), user.id)
    monkeypatch.setattr(throttle, "now", lambda: 6_000_000.0)
    for _ in range(settings.login_max_failures_per_account):
        assert attempt(settings, user.email, WRONG, "192.0.2.66") == login.BAD_CREDENTIALS  # no delay
    assert THROTTLED_ADDRESS_OR_PAIR in attempt(settings, user.email, temporary, "192.0.2.66")
    assert sessions.authenticate(settings, attempt(settings, user.email, temporary, "203.0.113.7"))
    for n in range(3):
        attempt(settings, user.email, WRONG, f"192.0.2.{n + 1}")
    assert THROTTLED_ACCOUNT in attempt(settings, user.email, temporary, "203.0.113.8")  # a new place waits


@pytest.mark.parametrize("counted_in", ["redis", "primary"])
def test_attempts_refused_by_the_delay_count_toward_the_address_limit(settings, monkeypatch, counted_in,
                                                                       private_redis):
    """Asking again and again whether the delay has passed is not free: each refused attempt
    counts toward LOGIN_MAX_FAILURES_PER_IP like a failure."""
    settings = replace(settings, login_account_delay_after=3, login_max_failures_per_ip=5,
                       redis_url=private_redis.url)
    app = create_app(settings)
    user = make_user(app, role="salesperson")
    if counted_in == "primary":
        private_redis.stop()
    monkeypatch.setattr(throttle, "now", lambda: 5_000_000.0)
    for n in range(3):
        assert attempt(settings, user.email, WRONG, f"192.0.2.{n + 1}") == login.BAD_CREDENTIALS
    for _ in range(5):
        assert THROTTLED_ACCOUNT in attempt(settings, user.email, WRONG, "192.0.2.99")
    assert THROTTLED_ADDRESS in attempt(settings, "someone.else@example.test", WRONG, "192.0.2.99")


@pytest.mark.parametrize("counted_in", ["redis", "primary"])
def test_parallel_wrong_passwords_cannot_overshoot_the_limit(settings, monkeypatch, counted_in, tmp_path):
    """20 guesses at once on one account from one address: at most the limit get a password check,
    whether Redis counts them or (Redis stopped) PRIMARY does."""
    private = PrivateRedis(tmp_path / "redis").start()
    settings = replace(settings, login_max_failures_per_account=5, redis_url=private.url)
    app = create_app(settings)
    user = make_user(app, role="salesperson")
    if counted_in == "primary":
        private.stop()
    real_verify, checked, lock = passwords.verify_password, [], threading.Lock()

    def counting_verify(*args):
        with lock:
            checked.append(1)
        threading.Event().wait(0.2)  # a slow argon2: every thread is inside at once
        return real_verify(*args)

    monkeypatch.setattr(passwords, "verify_password", counting_verify)
    start = threading.Barrier(20)

    def hammer():
        try:
            start.wait()
            attempt(settings, user.email, WRONG, "192.0.2.77")
        finally:
            release_connections()

    threads = [threading.Thread(target=hammer) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    private.stop()
    assert 1 <= len(checked) <= 5
    assert len(audit_rows(app, "auth.sign_in_failed")) == len(checked)
    assert len(audit_rows(app, "auth.sign_in_throttled")) == 1


def test_with_redis_down_the_throttle_counts_in_primary(settings, private_redis):
    settings = replace(settings, redis_url=private_redis.url)
    app = create_app(settings)
    user = make_user(app, role="salesperson")
    private_redis.stop()
    for _ in range(settings.login_max_failures_per_account):
        assert attempt(settings, user.email, WRONG, "192.0.2.66") == login.BAD_CREDENTIALS
    assert THROTTLED_ACCOUNT in attempt(settings, user.email, TEST_PASSWORD, "192.0.2.66")
    token = attempt(settings, user.email, TEST_PASSWORD, "198.51.100.20")  # the owner, elsewhere
    assert sessions.authenticate(settings, token)["user_id"] == user.id
    with app.test_request_context():
        temporary = users.reset_password(setup_context(settings), user.id)
    assert sessions.authenticate(settings, attempt(settings, user.email, temporary, "192.0.2.66"))


def test_counters_left_in_primary_are_purged_once_their_window_has_passed(settings, private_redis, monkeypatch):
    settings = replace(settings, redis_url=private_redis.url)
    app = create_app(settings)
    user = make_user(app, role="salesperson")
    private_redis.stop()
    for n in range(5):
        attempt(settings, user.email, WRONG, f"192.0.2.{n + 1}")
    with app.app_context():
        assert LoginThrottle.select().count() == 5 + 5 + 1  # per account and address, per address, per account
    monkeypatch.setattr(throttle, "now", lambda: time.time() + settings.login_throttle_window + 1)
    private_redis.start()  # the purge runs once an hour, when Redis grants its lock
    assert sessions.authenticate(settings, attempt(settings, user.email, TEST_PASSWORD, "198.51.100.20"))
    with app.app_context():
        assert LoginThrottle.select().count() == 0


# --- 7. sign-in racing a password change ---------------------------------------------------------

def race_sign_in_against(settings, monkeypatch, email, change):
    """Sign in as ``email`` in a thread whose password check finishes before
    ``change()`` runs and commits; returns what the sign-in gave (token or message)."""
    real_verify = passwords.verify_password
    checked, changed = threading.Event(), threading.Event()

    def verify_then_wait(*args):
        result = real_verify(*args)
        if threading.current_thread().name == "racing-sign-in":
            checked.set()
            assert changed.wait(20)
        return result

    monkeypatch.setattr(passwords, "verify_password", verify_then_wait)
    outcome = []

    def sign_in():
        try:
            outcome.append(attempt(settings, email, TEST_PASSWORD, "198.51.100.30"))
        finally:
            release_connections()

    thread = threading.Thread(target=sign_in, name="racing-sign-in")
    thread.start()
    assert checked.wait(20)
    try:
        change()
    finally:
        changed.set()
    thread.join(20)
    return outcome[0]


def test_a_sign_in_checked_before_a_reset_committed_gets_no_working_session(app, settings, monkeypatch):
    user = make_user(app, role="salesperson")

    def reset():
        with app.test_request_context():
            users.reset_password(setup_context(settings), user.id, "a brand new password 123")

    outcome = race_sign_in_against(settings, monkeypatch, user.email, reset)
    assert outcome == login.BAD_CREDENTIALS  # not a token: no session at all
    with app.app_context():
        assert Session.select().where(Session.user == user.id).count() == 0


def test_a_sign_in_checked_before_the_owner_changed_their_password_gets_no_working_session(
        app, settings, monkeypatch):
    user = make_user(app, role="salesperson")
    with app.app_context():
        kept = sessions.create_session(settings, user.id, "127.0.0.1", "pytest")

    def change():
        with app.test_request_context():
            ctx = Context(settings, Actor(id=user.id, email=user.email, address="127.0.0.1"))
            users.change_own_password(ctx, user.id, TEST_PASSWORD, "a brand new password 123",
                                      sessions.hash_token(kept))

    outcome = race_sign_in_against(settings, monkeypatch, user.email, change)
    assert outcome == login.BAD_CREDENTIALS  # not a token: no session at all
    assert sessions.authenticate(settings, kept)["user_id"] == user.id  # the session it was changed in


def test_a_pending_rehash_never_writes_the_old_passwords_hash_over_the_new_one(app, settings, monkeypatch):
    user = make_user(app, role="salesperson")  # hashed with time cost 1
    stronger = replace(settings, password_hash_time_cost=2)  # sign-in will want to rehash

    def reset():
        with app.test_request_context():
            users.reset_password(setup_context(settings), user.id, "a brand new password 123")

    race_sign_in_against(stronger, monkeypatch, user.email, reset)
    monkeypatch.undo()
    with app.app_context():
        stored = User.get_by_id(user.id).password_hash
    assert passwords.verify_password(settings, stored, "a brand new password 123")[0]
    assert not passwords.verify_password(settings, stored, TEST_PASSWORD)[0]


def test_sessions_created_before_the_password_changed_are_refused(app, settings):
    user = make_user(app, role="salesperson")
    with app.app_context():
        token = sessions.create_session(settings, user.id, "127.0.0.1", "pytest")
        assert sessions.authenticate(settings, token)["user_id"] == user.id
        # A session that slipped past the change (the change's own cleanup ran first):
        User.update(password_changed_at=utcnow() + timedelta(seconds=5)).where(User.id == user.id).execute()
        session_cache.invalidate(user_ids=[user.id])
        assert sessions.authenticate(settings, token) is None


def test_changing_ones_own_password_keeps_the_session_it_was_changed_in(app, settings):
    user = make_user(app, role="salesperson")
    client = app.test_client()
    assert post_login(client, user.email, TEST_PASSWORD).status_code == 302
    token = client.get_cookie(COOKIE_NAME).value
    with app.test_request_context():
        ctx = Context(settings, Actor(id=user.id, email=user.email, address="127.0.0.1"))
        users.change_own_password(ctx, user.id, TEST_PASSWORD, "a brand new password 123",
                                  sessions.hash_token(token))
    assert client.get("/api/me").status_code == 200


# --- 8. what the audit log says about failures ---------------------------------------------------

def test_a_failure_for_an_unknown_account_does_not_record_the_typed_email(app, settings):
    attempt(settings, "my secret password typed in the email box", WRONG, "192.0.2.9")
    (row,) = audit_rows(app, "auth.sign_in_failed")
    assert row.actor_email is None and row.ip == "192.0.2.9"
    with app.app_context():
        assert AuditLog.select().where(AuditLog.id == row.id, AuditLog.actor_id.is_null()).count() == 1
    assert "secret" not in (row.target_label or "") and "secret" not in str(row.details)


@pytest.mark.flow("Too many failed sign-ins")
def test_throttled_attempts_make_one_audit_row_then_one_with_their_count(app, settings, monkeypatch,
                                                                        append_only_audit_log):
    """The audit log stays append-only: a row at the first throttled attempt, none for the
    49 after it, and one with the total once the window has passed."""
    settings = replace(settings, login_max_failures_per_account=3)
    clock = [2_000_000.0]
    monkeypatch.setattr(throttle, "now", lambda: clock[0])
    user = make_user(app, role="salesperson")
    for _ in range(3):
        attempt(settings, user.email, WRONG, "192.0.2.50")
    for _ in range(50):
        assert THROTTLED_ACCOUNT in attempt(settings, user.email, WRONG, "192.0.2.50")
        clock[0] += 1
    (first,) = audit_rows(app, "auth.sign_in_throttled")
    assert (first.ip, first.actor_email, first.target_label) == ("192.0.2.50", None, user.email)
    assert len(audit_rows(app, "auth.sign_in_failed")) == 3
    assert audit_rows(app, "auth.sign_in_throttled_total") == []

    clock[0] += settings.login_throttle_window
    attempt(settings, "someone.else@example.test", WRONG, "198.51.100.1")  # any later sign-in writes it
    (total,) = audit_rows(app, "auth.sign_in_throttled_total")
    assert total.details["count"] == 50 and total.details["first"] == first.id
    assert (total.ip, total.actor_email, total.target_label) == ("192.0.2.50", None, user.email)
    assert len(audit_rows(app, "auth.sign_in_throttled")) == 1
