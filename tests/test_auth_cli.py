"""flask users / roles / sessions, and ensure-admin for the README run command."""

from __future__ import annotations

import os
import pwd
import re
from dataclasses import replace

import pytest

from handled import create_app
from handled.models import User
from tests.support.accounts import TEST_PASSWORD, csrf_token, make_user

pytestmark = pytest.mark.one_mode   # PRIMARY only: the same in both database modes


def can_sign_in(app, email, password):
    client = app.test_client()
    response = client.post("/login", data={"email": email, "password": password, "csrf_token": csrf_token(client)})
    return response.status_code == 302


def test_users_create_with_password_from_stdin_and_list(app, runner):
    result = runner.invoke(args=["users", "create", "Lead@Example.test", "--name", "Dock Lead", "--role",
                                 "warehouse_lead", "--password-stdin"], input="a long enough passphrase\n")
    assert result.exit_code == 0, result.output
    assert "created lead@example.test" in result.output and "temporary password" not in result.output
    assert can_sign_in(app, "lead@example.test", "a long enough passphrase")
    listing = runner.invoke(args=["users", "list"])
    assert "lead@example.test" in listing.output and "warehouse_lead" in listing.output and "1 user(s)" in listing.output


def test_users_create_without_password_prints_a_temporary_one(app, runner):
    result = runner.invoke(args=["users", "create", "temp@example.test", "--name", "Temp"])
    password = re.search(r"temporary password .*: (\S+)", result.output).group(1)
    assert can_sign_in(app, "temp@example.test", password)
    with app.app_context():
        assert User.get(User.email == "temp@example.test").must_change_password


def test_cli_errors_are_one_line_and_exit_1(runner):
    unknown_role = runner.invoke(args=["users", "create", "x@example.test", "--name", "X", "--role", "nope",
                                       "--password-stdin"], input="a long enough passphrase\n")
    assert unknown_role.exit_code == 1 and "Unknown role(s): nope" in unknown_role.output
    assert "Traceback" not in unknown_role.output
    short = runner.invoke(args=["users", "create", "x@example.test", "--name", "X", "--password-stdin"], input="short\n")
    assert short.exit_code == 1 and "at least 12 characters" in short.output
    missing = runner.invoke(args=["users", "disable", "ghost@example.test"])
    assert missing.exit_code == 1 and "No user has the email ghost@example.test" in missing.output


def test_disable_enable_reset_and_delete(app, runner):
    make_user(app, role="admin")
    user = make_user(app, role="salesperson", email="clerk@example.test")
    assert runner.invoke(args=["users", "disable", user.email]).exit_code == 0
    assert not can_sign_in(app, user.email, TEST_PASSWORD)
    assert runner.invoke(args=["users", "enable", user.email]).exit_code == 0
    assert can_sign_in(app, user.email, TEST_PASSWORD)
    reset = runner.invoke(args=["users", "reset-password", user.email])
    temporary = re.search(r"temporary password \(shown once\): (\S+)", reset.output).group(1)
    assert not can_sign_in(app, user.email, TEST_PASSWORD) and can_sign_in(app, user.email, temporary)
    assert runner.invoke(args=["users", "delete", user.email], input="n\n").exit_code == 1
    assert runner.invoke(args=["users", "delete", user.email, "--yes"]).exit_code == 0
    with app.app_context():
        assert User.get_or_none(User.email == user.email) is None
        from handled.models import AuditLog
        actions = [(r.action, r.actor_email) for r in AuditLog.select().where(AuditLog.target_label == user.email)
                   .order_by(AuditLog.id) if not r.action.startswith("auth.")]
    cli = f"cli:{pwd.getpwuid(os.geteuid()).pw_name}"   # the account that ran the command, not $USER
    assert actions == [("user.create", None), ("user.disable", cli), ("user.enable", cli),
                       ("user.reset_password", cli), ("user.delete", cli)]


def test_unlock_forgets_the_failed_sign_ins(app, settings, runner):
    user = make_user(app, role="salesperson", email="clerk@example.test")
    for _ in range(settings.login_max_failures_per_account):
        assert not can_sign_in(app, user.email, "not the password")
    assert not can_sign_in(app, user.email, TEST_PASSWORD)    # this address is refused for the account
    result = runner.invoke(args=["users", "unlock", user.email])
    assert result.exit_code == 0, result.output
    assert (f"unlocked clerk@example.test: {settings.login_max_failures_per_account} failed sign-in(s) forgotten, "
            "1 address(es) no longer refused") in result.output
    assert can_sign_in(app, user.email, TEST_PASSWORD)
    again = runner.invoke(args=["users", "unlock", user.email])
    assert "was not throttled; nothing to unlock" in again.output
    with app.app_context():
        from handled.models import AuditLog
        assert AuditLog.select().where(AuditLog.action == "user.unlock").count() == 2


def test_last_admin_is_protected_from_the_cli_too(app, runner):
    admin = make_user(app, role="admin")
    result = runner.invoke(args=["users", "disable", admin.email])
    assert result.exit_code == 1 and "last active administrator" in result.output


def test_roles_list(runner):
    output = runner.invoke(args=["roles", "list"]).output
    assert re.search(r"^admin\s+system\s+0 user\(s\)\s+.*manage_roles", output, re.M)
    assert re.search(r"^salesperson\s+system\s+0 user\(s\)\s+download_exports, view_customers$", output, re.M)


@pytest.mark.flow("First administrator")
def test_ensure_admin_generates_a_password_once_and_is_idempotent(app, runner):
    first = runner.invoke(args=["users", "ensure-admin"])
    assert first.exit_code == 0
    password = re.search(r"generated password .*: (\S+)", first.output).group(1)
    assert can_sign_in(app, "admin@example.com", password)
    again = runner.invoke(args=["users", "ensure-admin"])
    assert again.exit_code == 0 and "nothing to do" in again.output and password not in again.output


@pytest.mark.flow("First administrator")
def test_ensure_admin_uses_credentials_from_the_environment(settings):
    app = create_app(replace(settings, admin_email="boss@example.test", admin_password="from the environment"))
    result = app.test_cli_runner().invoke(args=["users", "ensure-admin"])
    assert "created the first administrator boss@example.test" in result.output and "generated" not in result.output
    assert can_sign_in(app, "boss@example.test", "from the environment")
    with app.app_context():
        assert not User.get(User.email == "boss@example.test").must_change_password


def test_admin_settings_are_validated():
    import pytest

    from handled.settings import SettingsError, load_settings
    base = {"PRIMARY_DATABASE_URL": "postgresql://127.0.0.1/x", "REDIS_URL": "redis://127.0.0.1:6379/0",
            "SECRET_KEY": "0123456789abcdef0123"}
    with pytest.raises(SettingsError, match="HANDLED_ADMIN_PASSWORD must be at least"):
        load_settings({**base, "HANDLED_ADMIN_PASSWORD": "short"})
    with pytest.raises(SettingsError, match="SESSION_IDLE_TIMEOUT"):
        load_settings({**base, "SESSION_IDLE_TIMEOUT": "100", "SESSION_MAX_AGE": "50"})
    with pytest.raises(SettingsError, match="SESSION_COOKIE_SECURE must be true or false"):
        load_settings({**base, "SESSION_COOKIE_SECURE": "maybe"})
    assert load_settings(base).session_cookie_secure is True
