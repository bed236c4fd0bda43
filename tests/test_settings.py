"""Settings: read once, validated, every error one sentence naming the variable."""

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from handled.errors import HandledError
from handled.settings import (SECTIONS, Settings, SettingsError, load_settings, read_environment, redact_url,
                              render_env_example)
from tests.support.databases import db_url
from tests.support.processes import run_flask

ROOT = Path(__file__).resolve().parent.parent
BASE = {
    "PRIMARY_DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/handled",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "SECRET_KEY": "x" * 32,
}


def settings_error(**changes) -> str:
    env = {**BASE, **changes}
    env = {k: v for k, v in env.items() if v is not None}
    with pytest.raises(SettingsError) as info:
        load_settings(env)
    return str(info.value)


@pytest.mark.parametrize("variable", ["PRIMARY_DATABASE_URL", "REDIS_URL", "SECRET_KEY"])
def test_missing_required_variable_is_named(variable):
    message = settings_error(**{variable: None})
    assert message.startswith(f"{variable} is not set")


def test_single_mode_defaults_data_to_primary():
    settings = load_settings(BASE)
    assert settings.mode == "single"
    assert settings.data.identity == settings.primary.identity
    assert settings.data.variable == "DATA_DATABASE_URL"
    assert settings.session_cache_ttl == 30
    assert settings.log_db_queries is False
    assert settings.transform_parallelism == max(1, min(8, (os.cpu_count() or 1) - 1))
    assert load_settings({**BASE, "TRANSFORM_PARALLELISM": "3"}).transform_parallelism == 3


@pytest.mark.parametrize("cores, slices", [(1, 1), (2, 1), (4, 3), (16, 8), (None, 1)])
def test_a_rebuild_leaves_readers_a_core_by_default(monkeypatch, cores, slices):
    """On 2 cores a rebuild that takes both stalled readers for up to 159 ms (issue 14, bench/
    bench_transformations.py): by default a build takes every core but one."""
    from handled.settings import default_transform_parallelism

    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    assert default_transform_parallelism() == slices
    assert load_settings(BASE).transform_parallelism == slices


def test_single_mode_with_a_different_data_database_is_refused():
    message = settings_error(DATA_DATABASE_URL="postgresql://postgres@127.0.0.1:5432/other")
    assert "DATA_DATABASE_URL" in message and "SPLIT_DB_MODE=false" in message


def test_single_mode_accepts_the_same_database_with_other_credentials():
    settings = load_settings({**BASE, "DATA_DATABASE_URL": "postgresql://reader:pw@127.0.0.1/handled"})
    assert settings.data.user == "reader"


def test_split_mode_needs_two_different_databases():
    assert "SPLIT_DB_MODE=true" in settings_error(SPLIT_DB_MODE="true")
    message = settings_error(SPLIT_DB_MODE="true", DATA_DATABASE_URL=BASE["PRIMARY_DATABASE_URL"])
    assert "same database" in message and "DATA_DATABASE_URL" in message
    ok = load_settings({**BASE, "SPLIT_DB_MODE": "true", "DATA_DATABASE_URL": "postgresql://127.0.0.1/handled_data"})
    assert ok.mode == "split" and ok.data.dbname == "handled_data"


@pytest.mark.parametrize("variable,value,fragment", [
    ("SPLIT_DB_MODE", "maybe", "SPLIT_DB_MODE must be true or false"),
    ("LOG_DB_QUERIES", "loud", "LOG_DB_QUERIES must be true or false"),
    ("SESSION_CACHE_TTL", "soon", "SESSION_CACHE_TTL must be a whole number"),
    ("SESSION_CACHE_TTL", "0", "SESSION_CACHE_TTL must be greater than 0"),
    ("PRIMARY_DATABASE_URL", "mysql://localhost/x", "PRIMARY_DATABASE_URL must start with postgresql://"),
    ("PRIMARY_DATABASE_URL", "postgresql://localhost", "PRIMARY_DATABASE_URL must name a database"),
    ("PRIMARY_DATABASE_URL", "postgresql://h/db?connection_limit=zero", "connection_limit must be a positive"),
    ("REDIS_URL", "http://localhost", "REDIS_URL must start with redis://"),
    ("SECRET_KEY", "short", "SECRET_KEY is too short"),
    ("TRANSFORM_PARALLELISM", "0", "TRANSFORM_PARALLELISM must be a whole number from 1 to 16"),
    ("TRANSFORM_PARALLELISM", "many", "TRANSFORM_PARALLELISM must be a whole number from 1 to 16"),
    ("TRANSFORM_PARALLELISM", "17", "not '17'"),
    ("DB_MIN_SERVER_VERSION", "sixteen", "DB_MIN_SERVER_VERSION must be a PostgreSQL release such as 16 or 16.4"),
    ("DB_MIN_SERVER_VERSION", "12.9", "DB_MIN_SERVER_VERSION is 12.9, but handled needs PostgreSQL 13 or newer"),
])
def test_bad_values_name_the_variable(variable, value, fragment):
    assert fragment in settings_error(**{variable: value})


def test_production_url_parameters():
    settings = load_settings({
        **BASE,
        "SPLIT_DB_MODE": "true",
        "PRIMARY_DATABASE_URL": "postgresql://app:s%40cret@db.example:6432/handled"
                                "?sslmode=require&connection_limit=5&pgbouncer=true&application_name=web",
        "DATA_DATABASE_URL": "postgresql://127.0.0.1/handled_data",
        "PRIMARY_MIGRATION_URL": "postgresql://app:s%40cret@db.example:5432/handled?sslmode=require",
    })
    primary = settings.primary
    assert primary.password == "s@cret" and primary.port == 6432
    assert primary.pool_size == 5
    assert primary.pgbouncer is True
    # Only libpq's own parameters reach libpq; pgbouncer/connection_limit would be rejected.
    assert primary.libpq_params == {"sslmode": "require", "application_name": "web"}
    assert "pgbouncer" not in primary.dsn() and "connection_limit" not in primary.dsn()
    assert settings.primary_migration.pgbouncer is False
    assert "s@cret" not in repr(settings) and "s@cret" not in primary.display()


def test_migration_url_through_pgbouncer_is_refused():
    message = settings_error(PRIMARY_MIGRATION_URL="postgresql://h/db?pgbouncer=true")
    assert message.startswith("PRIMARY_MIGRATION_URL must be a direct connection")


def test_dotenv_file_is_read_and_the_environment_wins(tmp_path, monkeypatch):
    env_file = tmp_path / ".env"
    env_file.write_text("SESSION_CACHE_TTL=45\nLOG_DB_QUERIES=true\nHANDLED_ONLY_IN_FILE=1\n")
    monkeypatch.setenv("LOG_DB_QUERIES", "false")
    values = read_environment(env_file)
    assert values["SESSION_CACHE_TTL"] == "45"
    assert values["HANDLED_ONLY_IN_FILE"] == "1"
    assert values["LOG_DB_QUERIES"] == "false"


def _clean_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if k not in BASE and k not in ("DATA_DATABASE_URL", "SPLIT_DB_MODE", "FLASK_APP")}
    env.update(extra)
    return env


def test_start_up_with_a_bad_setting_prints_one_sentence_and_no_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r}); import app"],
        cwd=tmp_path, env=_clean_env(**{**BASE, "SPLIT_DB_MODE": "perhaps"}),
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip() == "handled cannot start: SPLIT_DB_MODE must be true or false, not 'perhaps'."


def test_flask_finds_the_app_from_the_repo_root_without_flask_app(migrated_settings):
    settings = migrated_settings
    env = _clean_env(
        PRIMARY_DATABASE_URL=db_url(settings.primary.dbname),
        REDIS_URL=settings.redis_url, SECRET_KEY="y" * 32,
        SPLIT_DB_MODE=str(settings.split_db_mode).lower())
    if settings.split_db_mode:
        env["DATA_DATABASE_URL"] = db_url(settings.data.dbname)
    result = run_flask("db", "status", env=env, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "applied         0001_config_customer_schemas" in result.stdout


@pytest.mark.parametrize("variable,value,words", [
    ("SESSION_IDLE_TIMEOUT", "soon", "SESSION_IDLE_TIMEOUT must be a whole number of seconds, not 'soon'."),
    ("PASSWORD_MIN_LENGTH", "long", "PASSWORD_MIN_LENGTH must be a whole number of characters, not 'long'."),
    ("PASSWORD_MIN_LENGTH", "5", "PASSWORD_MIN_LENGTH must be at least 8 characters, not 5."),
    ("PASSWORD_HASH_MEMORY_KIB", "32", "PASSWORD_HASH_MEMORY_KIB must be at least 64 KiB, not 32."),
    ("IMPORT_MAX_BYTES", "1GB", "IMPORT_MAX_BYTES must be a whole number of bytes, not '1GB'."),
    ("IMPORT_BACKGROUND_BYTES", "0", "IMPORT_BACKGROUND_BYTES must be greater than 0 bytes, not 0."),
    ("LOGIN_MAX_FAILURES_PER_ACCOUNT", "ten",
     "LOGIN_MAX_FAILURES_PER_ACCOUNT must be a whole number greater than 0, not 'ten'."),
    ("LOGIN_THROTTLE_WINDOW", "0", "LOGIN_THROTTLE_WINDOW must be greater than 0 seconds, not 0."),
    ("HANDLED_ADMIN_EMAIL", "admin", "HANDLED_ADMIN_EMAIL must be an email address, not 'admin'."),
])
def test_error_words_match_the_unit(variable, value, words):
    assert settings_error(**{variable: value}) == words


def test_a_settings_error_is_a_handled_error_that_stops_start_up():
    with pytest.raises(HandledError) as info:
        load_settings({**BASE, "SECRET_KEY": "short"})
    assert isinstance(info.value, SettingsError) and info.value.exit_code == 2


def test_empty_values_mean_the_default():
    settings = load_settings({**BASE, "SESSION_CACHE_TTL": "", "BACKUP_DIR": " ", "METRICS_TOKEN": ""})
    assert (settings.session_cache_ttl, settings.backup_dir, settings.metrics_token) == (30, "var/backups", None)


def test_the_table_has_one_row_per_settings_attribute_and_states_every_default():
    rows = [var for section in SECTIONS for var in section.variables]
    assert len({var.name for var in rows}) == len(rows)
    assert sorted(var.field for var in rows) == sorted(Settings.__dataclass_fields__)
    assert all(f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
               for f in Settings.__dataclass_fields__.values()), "defaults belong to the table, not to Settings"


def test_env_example_is_rendered_from_the_table():
    committed = (ROOT / ".env.example").read_text()
    assert committed == render_env_example(), \
        "the settings table changed: run `python -m handled.settings > .env.example` and commit the file"


def test_python_m_handled_settings_prints_the_env_example():
    result = subprocess.run([sys.executable, "-m", "handled.settings"], cwd=ROOT, env=_clean_env(),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout == render_env_example()


@pytest.mark.flow("Environment")
def test_env_example_loads_once_its_placeholders_are_replaced(migrated_settings, tmp_path):
    """A new developer copies .env.example to .env: the app reads it, refuses the placeholder
    secret in one sentence, and runs once the databases and secret are their own."""
    settings = migrated_settings
    example = (ROOT / ".env.example").read_text()
    assert "SECRET_KEY=change-me" in example
    ours = {"PRIMARY_DATABASE_URL": db_url(settings.primary.dbname), "REDIS_URL": settings.redis_url,
            "SPLIT_DB_MODE": str(settings.split_db_mode).lower()}
    if settings.split_db_mode:
        ours["DATA_DATABASE_URL"] = db_url(settings.data.dbname)
    lines = [line for line in example.splitlines() if line.split("=", 1)[0].lstrip("# ") not in ours]
    (tmp_path / ".env").write_text("\n".join(lines + [f"{k}={v}" for k, v in ours.items()]) + "\n")
    env = _clean_env()

    refused = run_flask("--app", str(ROOT / "app.py"), "db", "status", env=env, cwd=tmp_path, timeout=60)
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "SECRET_KEY is still the placeholder from .env.example" in refused.stderr + refused.stdout

    text = (tmp_path / ".env").read_text().replace("SECRET_KEY=change-me-to-a-long-random-string",
                                                   "SECRET_KEY=" + "k" * 40)
    (tmp_path / ".env").write_text(text)
    status = run_flask("--app", str(ROOT / "app.py"), "db", "status", env=env, cwd=tmp_path, timeout=60)
    assert status.returncode == 0, status.stderr
    assert "applied         0001_config_customer_schemas" in status.stdout


def test_urls_in_settings_errors_and_messages_never_show_the_password():
    # a "/" in an unencoded password ends the host: urllib's complaint quotes what follows it
    message = settings_error(PRIMARY_DATABASE_URL="postgresql://app:s3cr/et99@db.internal:5432/handled")
    assert "PRIMARY_DATABASE_URL is not a valid URL" in message
    assert "s3cr" not in message and "et99" not in message
    message = settings_error(REDIS_URL="http://:hunter2hunter2@cache.internal:6379/0")
    assert "hunter2" not in message and "http://:***@cache.internal:6379/0" in message
    # the one helper, and DatabaseConfig.display(), show postgresql://user:***@host/db
    assert redact_url("pg_dump of postgresql://app:pa:ss@word@db:5432/h failed, redis://:pw@r/0") == (
        "pg_dump of postgresql://app:***@db:5432/h failed, redis://:***@r/0")
    primary = load_settings({**BASE, "PRIMARY_DATABASE_URL": "postgresql://app:s3cret@db/handled"}).primary
    assert primary.display() == "postgresql://app:***@db/handled"
    assert "s3cret" not in primary.dsn(password=False) and "s3cret" in primary.dsn()
