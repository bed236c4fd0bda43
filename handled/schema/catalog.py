"""What the catalog holds, and the model-versus-catalog drift comparison.

A partition is part of its parent, never a table of its own: every listing here
skips ``pg_class.relispartition`` rows, whatever the partitions are named, and
a parent that ``handled.schema.names.is_scratch`` names (a build being swapped
in, an old table being dropped) is not compared at all.
"""

from __future__ import annotations

import psycopg2.errors
from peewee import CompositeKey, ForeignKeyField

from handled.db import ConnectionProblem, direct_connection
from handled.schema.names import is_scratch
from handled.settings import DatabaseConfig


def create_database_if_missing(config: DatabaseConfig) -> bool:
    """Create the database a URL names, if absent; True when it was created.

    Connects to the server's ``postgres`` maintenance database with the same
    role, which therefore needs the CREATEDB right.
    """
    maintenance = DatabaseConfig(**{**config.__dict__, "dbname": "postgres"})
    with direct_connection(maintenance, "create-database") as conn, conn.cursor() as cur:
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
        SELECT c.table_schema || '.' || c.table_name, c.column_name, c.data_type, c.is_nullable = 'YES'
        FROM information_schema.columns c
        JOIN pg_namespace n ON n.nspname = c.table_schema
        JOIN pg_class t ON t.relnamespace = n.oid AND t.relname = c.table_name
        WHERE c.table_schema = ANY(%s) AND NOT t.relispartition""",
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
        WHERE n.nspname = ANY(%s) AND c.contype IN ('p', 'f', 'u') AND NOT t.relispartition""",
    "unique_indexes": """
        SELECT n.nspname || '.' || t.relname,
               ARRAY(SELECT a.attname FROM unnest(i.indkey) k JOIN pg_attribute a
                     ON a.attrelid = i.indrelid AND a.attnum = k ORDER BY a.attname)
        FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace
        WHERE n.nspname = ANY(%s) AND i.indisunique AND NOT i.indisprimary AND i.indexprs IS NULL
          AND NOT t.relispartition""",
}


def catalog_shape(conn, schemas) -> dict:
    """The same shape as ``model_shape``, per table, read from the live catalog
    (partitions are part of their parent and not listed)."""
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

    Scratch tables (``is_scratch``: builds being swapped in, old tables being
    dropped) are not compared; partitions never appear (see ``catalog_shape``).
    """
    live = catalog_shape(conn, schemas)
    problems = []
    declared = {_table(m): model_shape(m) for m in models}
    for name in sorted(set(live) - set(declared)):
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
