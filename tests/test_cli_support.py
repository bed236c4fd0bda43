"""The one CLI wrapper: every command of a HandledGroup ends in one line and an exit code."""

from __future__ import annotations

import os
import subprocess
from urllib.parse import urlsplit

import click
import psycopg2
import pytest
from click.testing import CliRunner

from handled import create_app
from handled.cli_support import HandledGroup
from handled.errors import Conflict, HandledError
from handled.settings import load_settings
from tests.support.databases import mode_env
from tests.support.environment import PG_SERVER, PREFIX, ROOT
from tests.support.processes import FLASK, free_port, run_flask

PG_HOST_PORT = urlsplit(PG_SERVER).netloc.rsplit("@", 1)[-1]

group = HandledGroup("sample", help="Commands that fail in each way a command can.")
# with_appcontext=False: these commands need no app, the wrapper is what is tested


@group.command("refuse", with_appcontext=False)
def refuse_command():
    raise HandledError("The facility DAL1 is inactive.", hint="Activate it first.", exit_code=3)


@group.command("clash", with_appcontext=False)
def clash_command():
    raise Conflict("Another build is running.")


@group.command("database", with_appcontext=False)
def database_command():
    raise psycopg2.OperationalError("connection to server at \"127.0.0.1\" failed\nsecond line")


@group.command("bug", with_appcontext=False)
def bug_command():
    raise ValueError("an internal detail")


@group.command("usage", with_appcontext=False)
@click.argument("count", type=int)
def usage_command(count):
    click.echo(count)


def run(*args):
    return CliRunner().invoke(group, list(args))


def test_a_handled_error_is_its_sentence_hint_and_exit_code():
    result = run("refuse")
    assert result.exit_code == 3
    assert result.output == "Error: The facility DAL1 is inactive. Activate it first.\n"
    assert run("clash").exit_code == 1 and run("clash").output == "Error: Another build is running.\n"


def test_a_database_that_does_not_answer_is_one_line(monkeypatch):
    monkeypatch.setattr("handled.cli_support.probe", lambda proxy: None)   # both sides answer again
    result = run("database")
    assert result.exit_code == 1
    assert result.output == ('Error: A database is not answering (connection to server at "127.0.0.1" failed); '
                             "see docs/OPS_RUNBOOK.md.\n")


def test_a_bug_is_logged_and_summarised(caplog):
    result = run("bug")
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == (
        "Error: The command failed unexpectedly (bug_command); the error was logged above.")
    assert "an internal detail" not in result.output
    assert any("an internal detail" in str(record.exc_info[1]) for record in caplog.records if record.exc_info)


def test_click_usage_errors_are_left_to_click():
    result = run("usage", "many")
    assert result.exit_code == 2 and "'many' is not a valid integer" in result.output


# -- every command group, against databases that are not there --------------------------------

MISSING_PRIMARY = [
    ["users", "list"], ["roles", "list"], ["sessions", "purge"], ["integrations", "list"],
    ["integrations", "history"], ["transformations", "list"], ["exports", "list"],
    ["db", "status"], ["db", "migrate"], ["backup", "create", "--target", "primary"],
]


@pytest.fixture(scope="module")
def app_on_missing_databases():
    """Split mode with a PRIMARY database that does not exist and a DATA role that does not exist."""
    settings = load_settings(mode_env("split", f"{PREFIX}_never_created_primary", "unused",
                                      DATA_DATABASE_URL=f"postgresql://{PREFIX}_no_such_role@{PG_HOST_PORT}/x"))
    return create_app(settings)


@pytest.mark.parametrize("words", MISSING_PRIMARY, ids=" ".join)
def test_each_command_group_says_which_database_is_missing_in_one_line(app_on_missing_databases, words):
    result = app_on_missing_databases.test_cli_runner().invoke(args=words)
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: The database ") and "PRIMARY_DATABASE_URL does not exist" in lines[0]
    assert "Traceback" not in result.output


def test_a_missing_data_role_is_named(app_on_missing_databases):
    result = app_on_missing_databases.test_cli_runner().invoke(args=["db", "check"])
    assert result.exit_code == 1
    assert f"The role '{PREFIX}_no_such_role' in DATA_DATABASE_URL does not exist" in result.output


@group.command("leak", with_appcontext=False)
def leak_command():
    raise HandledError("Could not reach postgresql://app:hunter2secret@db.internal/handled.")


def test_a_url_in_an_error_line_or_a_log_line_has_its_password_redacted():
    result = CliRunner().invoke(group, ["leak"])
    assert result.exit_code == 1
    assert "postgresql://app:***@db.internal/handled" in result.output and "hunter2secret" not in result.output
    import logging

    from handled import RedactingFormatter
    record = logging.LogRecord("handled.x", logging.ERROR, __file__, 1, "failed for %s", (
        "redis://:hunter2secret@cache:6379/0",), None)
    assert RedactingFormatter("%(message)s").format(record) == "failed for redis://:***@cache:6379/0"
    from handled.errors import first_line
    assert first_line(psycopg2.OperationalError("bad dsn postgresql://u:hunter2secret@h/d")) == (
        "bad dsn postgresql://u:***@h/d")


def flask_env(settings, **extra) -> dict:
    env = mode_env(settings.mode, settings.primary.dbname, settings.data.dbname if settings.split_db_mode else None,
                   **extra)
    return {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "FLASK_APP": str(ROOT / "app.py"), **env}


@pytest.mark.one_mode
def test_a_background_run_with_redis_down_is_one_sentence_naming_redis(settings, tmp_path):
    port = free_port()   # nothing listens there: the job queue's Redis is down
    result = run_flask("transformations", "run", "--background", "--all", cwd=tmp_path,
                       env=flask_env(settings, REDIS_URL=f"redis://127.0.0.1:{port}/0"))
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("Error: Redis at redis://127.0.0.1:") and f":{port}/0" in lines[0], lines
    assert "Traceback" not in result.stderr


@pytest.mark.one_mode
def test_a_duplicate_email_on_users_create_is_only_the_sentence(settings, tmp_path):
    """The unique violation is the expected answer, not a failed statement worth a WARNING with its SQL."""
    env = flask_env(settings)
    args = [FLASK, "users", "create", "dup@example.test", "--name", "Dup", "--password-stdin"]
    first = subprocess.run(args, cwd=tmp_path, env=env, input="a long enough passphrase\n",
                           capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, (first.stdout, first.stderr)
    again = subprocess.run(args, cwd=tmp_path, env=env, input="a long enough passphrase\n",
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 1
    lines = [line for line in (again.stdout + again.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and "dup@example.test" in lines[0], lines
    assert "INSERT" not in again.stderr and "WARNING" not in again.stderr
