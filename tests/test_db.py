"""The two proxies: lazy start, binding per mode, pools, URL parameters, query log."""

import logging

import pytest

import handled.db as dbmod
from handled.db import ConnectionProblem, data_db, direct_connection, init_databases, primary_db, quiet_queries
from handled.models import DATA_MODELS, PRIMARY_MODELS, Carrier, Role, User
from handled.settings import load_settings
from tests.support.databases import mode_env


def current_database(proxy) -> str:
    return proxy.execute_sql("SELECT current_database()").fetchone()[0]


def test_proxies_start_lazily_from_the_settings(settings, monkeypatch):
    dbmod.close_databases()
    primary_db.initialize(None)
    data_db.initialize(None)
    monkeypatch.setattr(dbmod, "get_settings", lambda: settings)
    query = User.select().where(User.email == "nobody@example.com")  # building a query connects nothing
    assert not primary_db.initialized and not data_db.initialized
    assert query.count() == 0
    assert primary_db.initialized and data_db.initialized
    assert Carrier.select().count() == 2


def test_each_proxy_reaches_its_own_database(settings):
    init_databases(settings)
    assert current_database(primary_db) == settings.primary.dbname
    assert current_database(data_db) == settings.data.dbname
    if settings.split_db_mode:
        assert primary_db.obj is not data_db.obj
    else:
        # Single mode: one database object, so one pool for both proxies.
        assert primary_db.obj is data_db.obj
    assert Role.select().count() == 4
    assert Carrier.select().count() == 2


def test_models_name_their_database_and_schema():
    for model in PRIMARY_MODELS:
        assert model._meta.database is primary_db, model
        assert model._meta.schema in ("config", "customer"), model
    for model in DATA_MODELS:
        assert model._meta.database is data_db, model
        assert model._meta.schema in ("workspace", "reference"), model


def schemas_of(proxy) -> set:
    return {r[0] for r in proxy.execute_sql("SELECT nspname FROM pg_namespace").fetchall()}


def test_schemas_live_where_the_mode_says(settings):
    init_databases(settings)
    primary, data = schemas_of(primary_db), schemas_of(data_db)
    if settings.split_db_mode:
        assert {"config", "customer", "_yoyo_primary"} <= primary
        assert not {"workspace", "reference", "_yoyo_data"} & primary
        assert {"workspace", "reference", "_yoyo_data"} <= data
        assert not {"config", "customer", "_yoyo_primary"} & data
    else:
        assert primary == data
        assert {"config", "customer", "workspace", "reference", "_yoyo_primary", "_yoyo_data"} <= primary


def test_connection_limit_sets_the_pool_size_and_pgbouncer_is_understood(settings):
    env = mode_env(settings.mode, settings.primary.dbname,
                   settings.data.dbname if settings.split_db_mode else None)
    env["PRIMARY_DATABASE_URL"] += "?connection_limit=3&pgbouncer=true&sslmode=disable"
    tuned = load_settings(env)
    init_databases(tuned)
    assert primary_db.obj.pool_stats()["max"] == 3
    assert primary_db.obj.pgbouncer is True
    # libpq got sslmode and would have refused pgbouncer/connection_limit: the connection works.
    assert current_database(primary_db) == tuned.primary.dbname
    assert primary_db.connection().get_dsn_parameters()["sslmode"] == "disable"
    # No session-level state: a transaction pooler may hand each transaction another server session.
    assert primary_db.execute_sql("SHOW search_path").fetchone()[0] == '"$user", public'


def test_sslmode_is_handed_to_libpq(settings):
    env = mode_env(settings.mode, settings.primary.dbname)
    env["PRIMARY_DATABASE_URL"] += "?sslmode=require"
    env["SPLIT_DB_MODE"] = "false"
    tuned = load_settings(env)
    # The shared test server has no TLS: libpq, told to require it, refuses, and we say so plainly.
    with pytest.raises(ConnectionProblem, match="asks for TLS \\(sslmode=require\\) but the server"):
        with direct_connection(tuned.primary, "test"):
            pass


def test_a_direct_connection_to_a_side_is_its_own_and_named_for_its_purpose(settings):
    for side in ("primary", "data"):
        with direct_connection(settings.direct_database(side), "check") as conn, conn.cursor() as cur:
            cur.execute("SELECT current_database(), current_setting('application_name')")
            assert cur.fetchone() == (settings.direct_database(side).dbname, "handled-check")
            assert conn.autocommit
        assert conn.closed


def test_pool_reuses_connections_across_requests(app, settings):
    with app.test_request_context():
        first = primary_db.connection()
        Role.select().count()
    with app.test_request_context():
        assert primary_db.connection() is first  # returned to the pool at teardown, then reused
    assert primary_db.obj.pool_stats()["in_use"] <= 1


def test_query_log_names_the_database_and_duration(settings, caplog):
    env = mode_env(settings.mode, settings.primary.dbname,
                   settings.data.dbname if settings.split_db_mode else None, LOG_DB_QUERIES="true")
    init_databases(load_settings(env))
    with caplog.at_level(logging.INFO, logger="handled.db"):
        Role.select().count()
        Carrier.select().count()
    lines = [r.getMessage() for r in caplog.records if r.name == "handled.db"]
    assert any(line.startswith("[primary] ") and " ms " in line and '"config"."roles"' in line for line in lines)
    assert any(line.startswith("[data] ") and '"reference"."carriers"' in line for line in lines)


def test_query_log_is_quiet_by_default_and_inside_quiet_queries(settings, caplog):
    init_databases(settings)
    with caplog.at_level(logging.INFO, logger="handled.db"):
        Role.select().count()
    assert not [r for r in caplog.records if r.name == "handled.db"]
    env = mode_env(settings.mode, settings.primary.dbname,
                   settings.data.dbname if settings.split_db_mode else None, LOG_DB_QUERIES="true")
    init_databases(load_settings(env))
    with caplog.at_level(logging.INFO, logger="handled.db"), quiet_queries():
        Carrier.select().count()
    assert not [r for r in caplog.records if r.name == "handled.db"]


def test_failed_statements_are_logged_as_warnings_even_when_quiet(settings, caplog):
    init_databases(settings)
    with caplog.at_level(logging.INFO, logger="handled.db"), pytest.raises(Exception):
        data_db.execute_sql("SELECT * FROM reference.no_such_table")
    warning = [r for r in caplog.records if r.name == "handled.db" and r.levelno == logging.WARNING]
    assert warning and warning[0].getMessage().startswith("[data] ")
    assert "no_such_table" in warning[0].getMessage()
