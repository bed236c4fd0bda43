"""argon2id hashing, rehash on sign-in when the parameters change, password rules."""

from __future__ import annotations

from dataclasses import replace

import pytest

from handled import create_app
from handled.auth import passwords
from handled.errors import HandledError
from handled.models import User
from tests.support.accounts import TEST_PASSWORD, csrf_token, make_user

pytestmark = pytest.mark.one_mode   # PRIMARY only: the same in both database modes


def test_hashes_are_argon2id_and_verify(settings):
    stored = passwords.hash_password(settings, TEST_PASSWORD)
    assert stored.startswith("$argon2id$")
    assert passwords.verify_password(settings, stored, TEST_PASSWORD) == (True, None)
    assert passwords.verify_password(settings, stored, "wrong")[0] is False
    assert passwords.verify_password(settings, None, "anything")[0] is False


def test_sign_in_rehashes_when_the_parameters_change(settings):
    old_app = create_app(settings)
    user = make_user(old_app, role="salesperson")
    stronger = replace(settings, password_hash_time_cost=settings.password_hash_time_cost + 1)
    app = create_app(stronger)
    client = app.test_client()
    response = client.post("/login", data={"email": user.email, "password": TEST_PASSWORD,
                                           "csrf_token": csrf_token(client)})
    assert response.status_code == 302
    with app.app_context():
        stored = User.get_by_id(user.id).password_hash
    assert f"t={stronger.password_hash_time_cost}," in stored
    assert passwords.verify_password(stronger, stored, TEST_PASSWORD) == (True, None)


@pytest.mark.parametrize("password, message", [
    ("short", "at least 12 characters"),
    ("jane.doe@example.test", "must not be your email"),
    ("my-jane.doe-password", "must not be your email"),
])
def test_password_rules_have_clear_messages(settings, password, message):
    with pytest.raises(HandledError, match=message):
        passwords.check_new_password(settings, password, "jane.doe@example.test")
    passwords.check_new_password(settings, "a perfectly fine passphrase", "jane.doe@example.test")


@pytest.mark.parametrize("password, message", [
    ("", "cannot be blank or only spaces"),
    (" " * 20, "cannot be blank or only spaces"),
    ("\t\n " * 6, "cannot be blank or only spaces"),
    ("1qaz2wsx3edc", "one of the 10,000 most common passwords"),
    ("  QWERTY123456 ", "one of the 10,000 most common passwords"),   # case and spaces do not help
])
def test_blank_and_common_passwords_are_refused(password, message):
    settings = type("Policy", (), {"password_min_length": 12})()
    with pytest.raises(HandledError, match=message):
        passwords.check_new_password(settings, password, "jane.doe@example.test")


def test_the_common_password_list_is_the_top_ten_thousand():
    common = passwords.common_passwords()
    assert len(common) == 10_000
    assert {"password", "123456", "qwerty", "baseball"} <= common
    assert "a perfectly fine passphrase" not in common


def test_a_common_password_is_refused_on_the_change_password_page(app, login_client):
    client = login_client(role="salesperson")
    page = client.post("/account/password", data={"current_password": TEST_PASSWORD,
                                                  "new_password": "qwerty123456"})
    assert "one of the 10,000 most common passwords" in page.get_data(as_text=True)
    with app.app_context():
        assert passwords.verify_password(app.config["HANDLED_SETTINGS"], User.get_by_id(client.user.id).password_hash,
                                         TEST_PASSWORD)[0]


GUESSABLE = [
    ("password1234", "common password with digits or symbols added"),
    ("Password2026!", "common password with digits or symbols added"),
    ("!!monkey2026", "common password with digits or symbols added"),
    ("111111111111", "at least 5 different characters"),
    ("aaaaaaaaaaaa", "at least 5 different characters"),
    ("abababababab", "at least 5 different characters"),
    ("qwertyuiop123", "keyboard, alphabet or digit run"),
    ("abcdefgh-Zoo!", "keyboard, alphabet or digit run"),
    ("123456789xyz", "keyboard, alphabet or digit run"),
    ("ZYXWVUTSRQ42", "keyboard, alphabet or digit run"),
]


@pytest.mark.parametrize("password, message", GUESSABLE)
def test_long_but_guessable_passwords_are_refused(password, message):
    settings = type("Policy", (), {"password_min_length": 12})()
    with pytest.raises(HandledError, match=message):
        passwords.check_new_password(settings, password, "jane.doe@example.test")


@pytest.mark.parametrize("password", ["correct horse battery staple", "a perfectly fine passphrase",
                                      "Tr0ub4dor&3xyz", "zebra-lamp-coffee", "default-pass-123"])
def test_ordinary_passphrases_still_pass(password):
    settings = type("Policy", (), {"password_min_length": 12})()
    passwords.check_new_password(settings, password, "jane.doe@example.test")


def test_generated_passwords_pass_the_rules():
    settings = type("Policy", (), {"password_min_length": 12})()
    for _ in range(2000):
        passwords.check_new_password(settings, passwords.generate_password(), "jane.doe@example.test")


def test_guessable_passwords_are_refused_on_the_page_and_the_cli(app, login_client, runner):
    client = login_client(role="salesperson")
    for password, message in GUESSABLE[::3]:
        page = client.post("/account/password", data={"current_password": TEST_PASSWORD,
                                                      "new_password": password})
        assert message in page.get_data(as_text=True), password
        result = runner.invoke(args=["users", "create", "new@example.test", "--name", "New", "--password-stdin"],
                               input=password + "\n")
        assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output, result.output
    with app.app_context():
        assert passwords.verify_password(app.config["HANDLED_SETTINGS"], User.get_by_id(client.user.id).password_hash,
                                         TEST_PASSWORD)[0]
        assert not User.select().where(User.email == "new@example.test").exists()
