"""Direct connections for tooling, connection errors in plain words, and the
model-versus-catalog drift comparison.

The app itself talks to PostgreSQL only through the two proxies in ``db.py``;
migrations, checks and operations tools open one direct, short-lived
connection from a ``DatabaseConfig`` here.
"""

from __future__ import annotations

from contextlib import contextmanager

import psycopg2
import psycopg2.errors
from peewee import CompositeKey, ForeignKeyField

from handled.schema.names import is_scratch
from handled.settings import DatabaseConfig

MIN_SERVER_VERSION = 130000
CONNECT_TIMEOUT = 5


class ConnectionProblem(Exception):
    """A database cannot be reached; the message says which and why."""


def explain_connection_error(config: DatabaseConfig, error: Exception) -> str:
    """One sentence a person can act on, for a failed connection."""
    text = str(error).strip()
    where = f"{config.host or 'localhost'}:{config.port or 5432}"
    var = config.variable
    lowered = text.lower()
    if f'database "{config.dbname}" does not exist' in text:
        return (f"The database {config.dbname!r} named by {var} does not exist on {where}; "
                f"create it (createdb -h {config.host or 'localhost'} {config.dbname}) or run the README setup command.")
    if "role" in lowered and "does not exist" in lowered:
        return (f"The role {config.user!r} in {var} does not exist on {where}; "
                "use an existing role or create it (createuser).")
    if "password authentication failed" in lowered:
        return f"PostgreSQL at {where} refused the password for {config.user!r} in {var}."
    if "does not support ssl" in lowered or "server does not support ssl" in lowered:
        return (f"{var} asks for TLS (sslmode={config.libpq_params.get('sslmode')}) but the server "
                f"at {where} does not offer it; enable ssl on the server or change sslmode.")
    if "connection refused" in lowered or "could not connect" in lowered or "timeout expired" in lowered \
            or "could not translate host name" in lowered:
        return (f"Cannot reach PostgreSQL at {where} ({var}): the server is not running "
                "or the host/port is wrong.")
    first_line = text.splitlines()[0] if text else type(error).__name__
    return f"Cannot connect to {config.display()} ({var}): {first_line}"


@contextmanager
def connect_direct(config: DatabaseConfig, autocommit: bool = True, application_name: str = "handled-tool"):
    """A direct psycopg2 connection, closed on exit; errors become ConnectionProblem.

    For tools and for work that needs connections of its own beside the pool
    (a sliced transformation build holds one per slice for its whole run)."""
    kwargs = config.connect_kwargs()
    kwargs.setdefault("connect_timeout", CONNECT_TIMEOUT)
    kwargs.setdefault("application_name", application_name)
    try:
        conn = psycopg2.connect(dbname=config.dbname, **kwargs)
    except psycopg2.Error as exc:
        raise ConnectionProblem(explain_connection_error(config, exc)) from None
    conn.autocommit = autocommit
    try:
        yield conn
    finally:
        conn.close()


def create_database_if_missing(config: DatabaseConfig) -> bool:
    """Create the database a URL names, if absent; True when it was created.

    Connects to the server's ``postgres`` maintenance database with the same
    role, which therefore needs the CREATEDB right.
    """
    maintenance = DatabaseConfig(**{**config.__dict__, "dbname": "postgres"})
    with connect_direct(maintenance) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (config.dbname,))
        if cur.fetchone():
            return False
        try:
            cur.execute(f'CREATE DATABASE "{config.dbname}"')
        except psycopg2.errors.InsufficientPrivilege:
            raise ConnectionProblem(
                f"The role {config.user or 'in use'} may not create the database {config.dbname!r} "
                f"named by {config.variable}; create it as a superuser (createdb {config.dbname}).") from None
        except psycopg2.errors.DuplicateDatabase:
            return False  # created meanwhile by someone else
    return True


def existing_schemas(conn) -> set[str]:
    with conn.cursor() as cur:
        cur.execute("SELECT nspname FROM pg_namespace")
        return {row[0] for row in cur.fetchall()}


# --- drift: models versus the migrated catalog -------------------------------

FIELD_TYPES = {
    "AUTO": "integer", "BIGAUTO": "bigint", "INT": "integer", "BIGINT": "bigint",
    "SMALLINT": "smallint", "TEXT": "text", "VARCHAR": "character varying",
    "BOOL": "boolean", "DOUBLE": "double precision", "FLOAT": "real", "DECIMAL": "numeric",
    "DATETIME": "timestamp without time zone", "TIMESTAMPTZ": "timestamp with time zone",
    "DATE": "date", "JSON": "jsonb", "JSONB": "jsonb", "UUID": "uuid", "BLOB": "bytea",
}
ON_DELETE = {"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}


def _column_type(field) -> str:
    if isinstance(field, ForeignKeyField):
        return _column_type(field.rel_field)
    return FIELD_TYPES.get(field.field_type, field.field_type.lower())


def _table(model) -> str:
    return f"{model._meta.schema}.{model._meta.table_name}"


def model_shape(model) -> dict:
    """Tables, columns, types, nullability and keys as the model declares them."""
    meta = model._meta
    pk = meta.primary_key
    pk_cols = tuple(meta.fields[n].column_name for n in pk.field_names) if isinstance(pk, CompositeKey) \
        else (pk.column_name,)
    columns = {f.column_name: (_column_type(f), bool(f.null) and f.column_name not in pk_cols)
               for f in meta.sorted_fields}
    fks = {(f.column_name,): (_table(f.rel_model), (f.rel_field.column_name,), (f.on_delete or "NO ACTION").upper())
           for f in meta.sorted_fields if isinstance(f, ForeignKeyField)}
    uniques = {(f.column_name,) for f in meta.sorted_fields if f.unique and f.column_name not in pk_cols}
    for fields, unique in meta.indexes:
        if unique:
            uniques.add(tuple(meta.fields[n].column_name for n in fields))
    return {"columns": columns, "pk": tuple(sorted(pk_cols)), "fks": fks, "uniques": uniques}


CATALOG_SQL = {
    "columns": """
        SELECT table_schema || '.' || table_name, column_name, data_type, is_nullable = 'YES'
        FROM information_schema.columns WHERE table_schema = ANY(%s)""",
    "constraints": """
        SELECT n.nspname || '.' || t.relname, c.contype,
               ARRAY(SELECT a.attname FROM unnest(c.conkey) k JOIN pg_attribute a
                     ON a.attrelid = c.conrelid AND a.attnum = k ORDER BY a.attname),
               rn.nspname || '.' || rt.relname,
               ARRAY(SELECT a.attname FROM unnest(c.confkey) k JOIN pg_attribute a
                     ON a.attrelid = c.confrelid AND a.attnum = k),
               c.confdeltype
        FROM pg_constraint c
        JOIN pg_class t ON t.oid = c.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace
        LEFT JOIN pg_class rt ON rt.oid = c.confrelid LEFT JOIN pg_namespace rn ON rn.oid = rt.relnamespace
        WHERE n.nspname = ANY(%s) AND c.contype IN ('p', 'f', 'u')""",
    "partitions": """
        SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = ANY(%s) AND c.relispartition""",
    "unique_indexes": """
        SELECT n.nspname || '.' || t.relname,
               ARRAY(SELECT a.attname FROM unnest(i.indkey) k JOIN pg_attribute a
                     ON a.attrelid = i.indrelid AND a.attnum = k ORDER BY a.attname)
        FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace
        WHERE n.nspname = ANY(%s) AND i.indisunique AND NOT i.indisprimary AND i.indexprs IS NULL""",
}


def catalog_shape(conn, schemas) -> dict:
    """The same shape as ``model_shape``, per table, read from the live catalog."""
    tables: dict = {}

    def table(name):
        return tables.setdefault(name, {"columns": {}, "pk": (), "fks": {}, "uniques": set()})

    with conn.cursor() as cur:
        cur.execute(CATALOG_SQL["columns"], (list(schemas),))
        for name, column, data_type, nullable in cur.fetchall():
            table(name)["columns"][column] = (data_type, nullable)
        cur.execute(CATALOG_SQL["constraints"], (list(schemas),))
        for name, kind, cols, ref_table, ref_cols, deltype in cur.fetchall():
            if kind == "p":
                table(name)["pk"] = tuple(cols)
            elif kind == "u":
                table(name)["uniques"].add(tuple(cols))
            else:
                table(name)["fks"][tuple(cols)] = (ref_table, tuple(ref_cols), ON_DELETE[deltype])
        cur.execute(CATALOG_SQL["unique_indexes"], (list(schemas),))
        for name, cols in cur.fetchall():
            table(name)["uniques"].add(tuple(cols))
    return tables


def compare_models(conn, models, schemas) -> list[str]:
    """Every difference between the models and the catalog, one sentence each.

    Scratch tables (builds being swapped in, see handled.schema.names) and
    partitions (their parent is compared) are not compared.
    """
    live = catalog_shape(conn, schemas)
    problems = []
    declared = {_table(m): model_shape(m) for m in models}
    with conn.cursor() as cur:
        cur.execute(CATALOG_SQL["partitions"], (list(schemas),))
        partitions = {row[0] for row in cur.fetchall()}
    for name in sorted(set(live) - set(declared) - partitions):
        if not is_scratch(name.split(".", 1)[1]):
            problems.append(f"table {name} exists in the database but no model declares it")
    for name, want in declared.items():
        have = live.get(name)
        if have is None:
            problems.append(f"table {name} is declared by a model but missing from the database")
            continue
        problems += _compare_table(name, want, have)
    return problems


def _compare_table(name: str, want: dict, have: dict) -> list[str]:
    problems = []
    for column in sorted(set(want["columns"]) | set(have["columns"])):
        w, h = want["columns"].get(column), have["columns"].get(column)
        if w is None:
            problems.append(f"{name}.{column} exists in the database but not in the model")
        elif h is None:
            problems.append(f"{name}.{column} is in the model but not in the database")
        elif w[0] != h[0]:
            problems.append(f"{name}.{column} is {h[0]} in the database but {w[0]} in the model")
        elif w[1] != h[1]:
            problems.append(f"{name}.{column} is {'NULL' if h[1] else 'NOT NULL'} in the database "
                            f"but {'NULL' if w[1] else 'NOT NULL'} in the model")
    if tuple(sorted(want["pk"])) != tuple(sorted(have["pk"])):
        problems.append(f"{name} primary key is {have['pk']} in the database but {want['pk']} in the model")
    for cols in sorted(set(want["fks"]) | set(have["fks"])):
        w, h = want["fks"].get(cols), have["fks"].get(cols)
        if w != h:
            problems.append(f"{name} foreign key on {', '.join(cols)} is {_fk_words(h)} in the database "
                            f"but {_fk_words(w)} in the model")
    want_u = {tuple(sorted(u)) for u in want["uniques"]}
    if want_u != have["uniques"]:
        problems.append(f"{name} unique keys are {sorted(have['uniques'])} in the database "
                        f"but {sorted(want_u)} in the model")
    return problems


def _fk_words(fk) -> str:
    if fk is None:
        return "absent"
    table, cols, on_delete = fk
    return f"-> {table}({', '.join(cols)}) ON DELETE {on_delete}"
