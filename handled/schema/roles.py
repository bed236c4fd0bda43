"""Least-privilege database roles: ``flask db create-roles``, the grants kept after each migration,
and the ``flask db check`` line about the runtime role (docs/DEPLOYMENT_CHECKLIST.md).

Per database, named after it (roles are cluster-wide; database names are unique on a server):

``<db>_owner``  runs the migrations and owns the schemas and their tables (PRIMARY_MIGRATION_URL,
                DATA_MIGRATION_URL); also used for split/unsplit copies, backups and prune.
``<db>_app``    the runtime role of the web, CLI and workers (PRIMARY_DATABASE_URL, DATA_DATABASE_URL):
                reads and writes rows, never creates, alters or drops anything; on ``config.audit_log``
                only SELECT and INSERT; on workspace exactly what imports do (SELECT, INSERT, UPDATE
                for upserts, TRUNCATE for replace); on reference SELECT only.
``<db>_build``  only where DATA lives: the transformation builder (DATA_BUILD_URL). It owns the
                reference tables, since a swap renames the live table and only an owner may; it may
                create tables in ``reference``, read ``workspace`` and add rows to its run ledger
                (the swap records itself there), nothing else. A builder that goes wrong can at
                worst replace derived tables, which a rebuild recreates, and add ledger rows.
                The owner is a member of it, so migrations still alter reference tables.

Default privileges make every table the owner (or the builder) creates later readable, and as
writable as its schema's rule says, by the runtime role; ``ensure_privileges`` runs again after
every ``flask db migrate`` (as the owner), so a new reference table is handed to the builder and
the audit log never regains UPDATE or DELETE.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field, replace
from urllib.parse import quote, urlencode

from psycopg2 import sql
from psycopg2.extensions import encrypt_password

from handled.db import direct_connection
from handled.errors import HandledError
from handled.models import SCHEMAS
from handled.settings import DatabaseConfig, Settings
from handled.settings_parsers import DEFAULT_POOL_SIZE, DEFAULT_POOL_TIMEOUT

TRACKING_SCHEMAS = {"primary": "_yoyo_primary", "data": "_yoyo_data"}   # as in schema/migrations.py
SUFFIXES = {"owner": "_owner", "runtime": "_app", "builder": "_build"}
MAX_IDENTIFIER = 63
ROLE_ATTRIBUTES = "LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"
# what the runtime role may do, per schema
ROW_RIGHTS = {"config": "SELECT, INSERT, UPDATE, DELETE", "customer": "SELECT, INSERT, UPDATE, DELETE",
              "workspace": "SELECT, INSERT, UPDATE, TRUNCATE", "reference": "SELECT"}
APPEND_ONLY = ("config", "audit_log")
BUILDER_APPENDS_TO = "workspace.run_ledger"   # the one workspace table the builder writes: INSERT only


class RolesError(HandledError):
    """create-roles cannot go on; the message says why."""


@dataclass(frozen=True)
class RoleNames:
    owner: str
    runtime: str
    builder: str | None

    @classmethod
    def for_database(cls, dbname: str, builder: bool) -> RoleNames:
        base = dbname[:MAX_IDENTIFIER - max(len(s) for s in SUFFIXES.values())]
        return cls(base + SUFFIXES["owner"], base + SUFFIXES["runtime"],
                   base + SUFFIXES["builder"] if builder else None)

    def all(self) -> list[str]:
        return [name for name in (self.owner, self.runtime, self.builder) if name]


@dataclass
class DatabaseRoles:
    """One database's roles: which sides it holds and the URLs handled reaches it by."""
    dbname: str
    sides: tuple[str, ...]
    names: RoleNames
    created: list[str] = field(default_factory=list)
    passwords: dict = field(default_factory=dict, repr=False)   # role -> password to show (new ones only)
    urls: list[tuple[str, str]] = field(default_factory=list, repr=False)


def databases(settings: Settings) -> list[DatabaseRoles]:
    """The databases handled uses, each with the sides it holds and its role names."""
    if settings.split_db_mode:
        return [DatabaseRoles(settings.primary.dbname, ("primary",),
                              RoleNames.for_database(settings.primary.dbname, builder=False)),
                DatabaseRoles(settings.data.dbname, ("data",), RoleNames.for_database(settings.data.dbname, builder=True))]
    return [DatabaseRoles(settings.primary.dbname, ("primary", "data"),
                          RoleNames.for_database(settings.primary.dbname, builder=True))]


def _schemas(sides) -> list[str]:
    return [schema for side in sides for schema in (*SCHEMAS[side], TRACKING_SCHEMAS[side])]


# --- create-roles (as an administrator) -----------------------------------------------------

def create_roles(settings: Settings) -> list[DatabaseRoles]:
    """Create (or bring back in line) the roles of every database; see the module docstring.

    Runs over DB_ADMIN_URL (from the environment, never argv), one transaction per database.
    Running it again changes nothing: attributes, grants and owners end the same, and a role
    that exists keeps its password unless DB_*_PASSWORD gives one."""
    admin = settings.db_admin
    if admin is None:
        raise RolesError("DB_ADMIN_URL is not set; set it (in the environment of this one command) to a role "
                         "that may create roles and own the handled databases, e.g. postgresql://postgres@host/postgres.")
    wanted = {"owner": settings.db_owner_password, "runtime": settings.db_runtime_password,
              "builder": settings.db_build_password}
    plans = databases(settings)
    for plan in plans:
        config = replace(admin, dbname=plan.dbname, variable="DB_ADMIN_URL")
        with direct_connection(config, "create-roles", autocommit=False) as conn:
            with conn.cursor() as cur:
                _check_admin(cur, config)
                for kind in ("owner", "runtime", "builder"):
                    name = getattr(plan.names, kind)
                    if name:
                        _ensure_role(cur, plan, name, wanted[kind])
                if plan.names.builder:
                    cur.execute(sql.SQL("GRANT {} TO {}").format(*map(sql.Identifier, (plan.names.builder, plan.names.owner))))
                _database_rights(cur, plan)   # a fresh database's schemas: the owner's first migrate makes them
                _take_ownership(cur, plan)    # what an earlier migration made as another role
            ensure_privileges(conn, plan.names, plan.sides)
            conn.commit()
        plan.urls = _urls(settings, plan, wanted)
    return plans


def _check_admin(cur, config: DatabaseConfig) -> None:
    cur.execute("SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user")
    if not cur.fetchone()[0]:
        raise RolesError(f"The role {config.user or 'in use'} in DB_ADMIN_URL may not create roles; "
                         "use a superuser or a role with CREATEROLE that owns the databases.")


def _ensure_role(cur, plan: DatabaseRoles, name: str, password: str | None) -> None:
    cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,))
    exists = cur.fetchone() is not None
    role = sql.Identifier(name)
    if not exists:
        password = password or secrets.token_urlsafe(24)
        cur.execute(sql.SQL("CREATE ROLE {} " + ROLE_ATTRIBUTES + " PASSWORD %s").format(role),
                    (_hashed(cur, name, password),))
        plan.created.append(name)
        plan.passwords[name] = password
        return
    cur.execute(sql.SQL("ALTER ROLE {} " + ROLE_ATTRIBUTES).format(role))
    if password:
        cur.execute(sql.SQL("ALTER ROLE {} PASSWORD %s").format(role), (_hashed(cur, name, password),))


def _hashed(cur, name: str, password: str) -> str:
    """The password hashed here (SCRAM, as the server's password_encryption says), so the clear
    text never reaches the server, its statement log or pg_stat_activity."""
    return encrypt_password(password, name, cur.connection, None)


def _database_rights(cur, plan: DatabaseRoles) -> None:
    database = sql.Identifier(plan.dbname)
    names = plan.names
    cur.execute(sql.SQL("GRANT CONNECT, CREATE, TEMPORARY ON DATABASE {} TO {}").format(database, sql.Identifier(names.owner)))
    for role in (names.runtime, names.builder):
        if role:
            cur.execute(sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(database, sql.Identifier(role)))
            cur.execute(sql.SQL("REVOKE CREATE ON DATABASE {} FROM {}").format(database, sql.Identifier(role)))


OBJECTS_TO_OWN = """
    SELECT n.nspname, c.relname, c.relkind
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = ANY(%(schemas)s) AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
      AND pg_get_userbyid(c.relowner) <> %(owner)s
      AND NOT (n.nspname = 'reference' AND pg_get_userbyid(c.relowner) = %(builder)s)
      AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                      AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i'))
    ORDER BY 1, 2"""
KIND_WORDS = {"r": "TABLE", "p": "TABLE", "f": "FOREIGN TABLE", "v": "VIEW", "m": "MATERIALIZED VIEW", "S": "SEQUENCE"}


def _take_ownership(cur, plan: DatabaseRoles) -> None:
    """What an earlier superuser migration created becomes the owner's (reference: the builder's,
    in ``ensure_privileges``)."""
    names = plan.names
    cur.execute("SELECT nspname FROM pg_namespace WHERE nspname = ANY(%s) AND pg_get_userbyid(nspowner) <> %s",
                (_schemas(plan.sides), names.owner))
    for (schema,) in cur.fetchall():
        cur.execute(sql.SQL("ALTER SCHEMA {} OWNER TO {}").format(sql.Identifier(schema), sql.Identifier(names.owner)))
    owner = sql.Identifier(plan.names.owner)
    cur.execute(OBJECTS_TO_OWN, {"schemas": _schemas(plan.sides), "owner": plan.names.owner,
                                 "builder": plan.names.builder or ""})
    for schema, name, kind in cur.fetchall():
        cur.execute(sql.SQL("ALTER " + KIND_WORDS[kind] + " {}.{} OWNER TO {}").format(
            sql.Identifier(schema), sql.Identifier(name), owner))
    cur.execute("SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                "WHERE n.nspname = ANY(%s) AND pg_get_userbyid(p.proowner) <> %s ORDER BY 1",
                (_schemas(plan.sides), plan.names.owner))
    for (signature,) in cur.fetchall():
        cur.execute(sql.SQL("ALTER FUNCTION " + signature + " OWNER TO {}").format(owner))


# --- the grants (as the administrator, or as the owner after each migration) -----------------

def ensure_privileges(conn, names: RoleNames, sides) -> None:
    """Hand reference tables to the builder, then grant and set default privileges; idempotent."""
    with conn.cursor() as cur:
        cur.execute("SELECT nspname FROM pg_namespace WHERE nspname = ANY(%s)", (_schemas(sides),))
        present = {row[0] for row in cur.fetchall()}
        runtime, owner = sql.Identifier(names.runtime), sql.Identifier(names.owner)
        builder = sql.Identifier(names.builder) if names.builder else None
        for schema in [s for s in _schemas(sides) if s in present]:
            ident = sql.Identifier(schema)

            def run(statement: str, *roles) -> None:
                cur.execute(sql.SQL(statement).format(*roles, schema=ident))

            run("REVOKE ALL ON SCHEMA {schema} FROM PUBLIC")
            run("GRANT USAGE ON SCHEMA {schema} TO {}", runtime)
            run("REVOKE CREATE ON SCHEMA {schema} FROM {}", runtime)
            rights = ROW_RIGHTS.get(schema, "SELECT")   # tracking schemas: read (migration status)
            creators = [owner] + ([builder] if schema == "reference" and builder else [])
            run(f"GRANT {rights} ON ALL TABLES IN SCHEMA {{schema}} TO {{}}", runtime)
            for creator in creators:
                run(f"ALTER DEFAULT PRIVILEGES FOR ROLE {{}} IN SCHEMA {{schema}} GRANT {rights} ON TABLES TO {{}}",
                    creator, runtime)
            if rights != "SELECT":
                run("GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA {schema} TO {}", runtime)
                run("ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {schema} GRANT USAGE, SELECT, UPDATE "
                    "ON SEQUENCES TO {}", owner, runtime)
            if builder and schema in ("workspace", "reference"):
                run("GRANT USAGE ON SCHEMA {schema} TO {}", builder)
                run("GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {}", builder)
                run("ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {schema} GRANT SELECT ON TABLES TO {}",
                    owner, builder)
                run(("GRANT" if schema == "reference" else "REVOKE") + " CREATE ON SCHEMA {schema} "
                    + ("TO" if schema == "reference" else "FROM") + " {}", builder)
        if builder and "reference" in present:   # after its CREATE on reference: an owner needs it
            cur.execute("SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                        "WHERE n.nspname = 'reference' AND c.relkind IN ('r', 'p') "
                        "AND pg_get_userbyid(c.relowner) <> %s ORDER BY 1", (names.builder,))
            for (table,) in cur.fetchall():
                cur.execute(sql.SQL("ALTER TABLE reference.{} OWNER TO {}").format(sql.Identifier(table), builder))
        if builder and "workspace" in present:   # a swap writes its ledger row (handled/ledger.py)
            cur.execute("SELECT to_regclass(%s) IS NOT NULL", (BUILDER_APPENDS_TO,))
            if cur.fetchone()[0]:
                cur.execute(sql.SQL("GRANT INSERT ON {} TO {}").format(
                    sql.Identifier(*BUILDER_APPENDS_TO.split(".")), builder))
        if "config" in present:
            cur.execute("SELECT to_regclass('config.audit_log') IS NOT NULL")
            if cur.fetchone()[0]:
                cur.execute(sql.SQL("REVOKE UPDATE, DELETE, TRUNCATE ON config.audit_log FROM PUBLIC, {}").format(runtime))


def after_migrate(conn, side: str) -> bool:
    """After ``flask db migrate`` of one side: when this database has handled's roles and the
    migrator is their owner (or a superuser), keep the grants in line. True when it did."""
    names = RoleNames.for_database(conn.info.dbname, builder=True)
    with conn.cursor() as cur:
        cur.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", (names.all(),))
        found = {row[0] for row in cur.fetchall()}
        cur.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        superuser = cur.fetchone()[0]
    if names.runtime not in found or names.owner not in found:
        return False
    if not superuser and conn.info.user != names.owner:
        return False
    if names.builder not in found:
        names = replace(names, builder=None)
    if superuser:   # a superuser migrated: what it created becomes the owner's, as create-roles does
        with conn.cursor() as cur:
            _take_ownership(cur, DatabaseRoles(conn.info.dbname, (side,), names))
    ensure_privileges(conn, names, (side,))
    return True


# --- the URLs to set -------------------------------------------------------------------------

def _url(config: DatabaseConfig, user: str, password: str | None) -> str:
    if password is None:
        shown = "PASSWORD"
    elif password.startswith("${"):   # a placeholder for a password the operator set (never shown)
        shown = password
    else:
        shown = quote(password, safe="")
    auth = quote(user, safe="") + ":" + shown + "@"
    host = config.host or "localhost"
    port = f":{config.port}" if config.port else ""
    params = dict(config.libpq_params)
    if config.pool_size != DEFAULT_POOL_SIZE:
        params["connection_limit"] = config.pool_size
    if config.pool_timeout != DEFAULT_POOL_TIMEOUT:
        params["pool_timeout"] = config.pool_timeout
    if config.pgbouncer:
        params["pgbouncer"] = "true"
    query = f"?{urlencode(params)}" if params else ""
    return f"postgresql://{auth}{host}{port}/{quote(config.dbname)}{query}"


def _urls(settings: Settings, plan: DatabaseRoles, wanted: dict) -> list[tuple[str, str]]:
    """(variable, URL) lines: a new role's generated password is shown (this once); a password from
    DB_*_PASSWORD is not (the operator has it); an existing role's stays PASSWORD (unchanged)."""
    def secret(kind: str) -> str | None:
        name = getattr(plan.names, kind)
        if name in plan.passwords and not wanted[kind]:
            return plan.passwords[name]
        return "${DB_%s_PASSWORD}" % {"owner": "OWNER", "runtime": "RUNTIME", "builder": "BUILD"}[kind] \
            if wanted[kind] else None

    names, lines = plan.names, []
    for side in plan.sides:
        variable = "PRIMARY" if side == "primary" else "DATA"
        if side == "data" and not settings.split_db_mode:
            lines.append(("DATA_BUILD_URL", _url(settings.primary_migration or settings.primary, names.builder,
                                                 secret("builder"))))
            continue
        lines.append((f"{variable}_DATABASE_URL", _url(settings.database(side), names.runtime, secret("runtime"))))
        direct = settings.direct_database(side)
        lines.append((f"{variable}_MIGRATION_URL", _url(direct, names.owner, secret("owner"))))
        if side == "data":
            lines.append(("DATA_BUILD_URL", _url(direct, names.builder, secret("builder"))))
    return lines


# --- flask db check: is the runtime role too powerful? ---------------------------------------

def runtime_problems(conn, sides) -> list[str]:
    """What the connected (runtime) role may do beyond its job, one phrase each."""
    problems = []
    schemas = _schemas(sides)
    with conn.cursor() as cur:
        cur.execute("SELECT rolsuper, rolbypassrls, rolcreaterole, rolcreatedb, rolreplication FROM pg_roles "
                    "WHERE rolname = current_user")
        superuser, bypassrls, createrole, createdb, replication = cur.fetchone()
        for flag, words in ((superuser, "is a superuser"), (bypassrls, "has BYPASSRLS"),
                            (createrole, "has CREATEROLE"), (createdb, "has CREATEDB"),
                            (replication, "has REPLICATION")):
            if flag:
                problems.append(words)
        if superuser:
            return problems
        cur.execute("SELECT has_database_privilege(current_database(), 'CREATE')")
        if cur.fetchone()[0]:
            problems.append("may create schemas in this database")
        cur.execute("SELECT nspname, pg_has_role(nspowner, 'USAGE'), has_schema_privilege(oid, 'CREATE') "
                    "FROM pg_namespace WHERE nspname = ANY(%s) ORDER BY 1", (schemas,))
        for schema, owns, create in cur.fetchall():
            if owns:
                problems.append(f"owns the schema {schema}")
            elif create:
                problems.append(f"may create tables in {schema}")
        cur.execute("SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = ANY(%s) AND c.relkind IN ('r', 'p') AND NOT c.relispartition "
                    "AND pg_has_role(c.relowner, 'USAGE') ORDER BY 1", (schemas,))
        owned = [row[0] for row in cur.fetchall()]
        if owned:
            problems.append(f"owns {len(owned)} table(s) (may alter or drop them), e.g. {owned[0]}")
        if "primary" in sides:
            cur.execute("SELECT to_regclass('config.audit_log') IS NOT NULL")
            if cur.fetchone()[0]:
                cur.execute("SELECT privilege FROM unnest(ARRAY['UPDATE', 'DELETE', 'TRUNCATE']) AS privilege "
                            "WHERE has_table_privilege('config.audit_log', privilege)")
                rights = [row[0] for row in cur.fetchall()]
                if rights:
                    problems.append(f"may {'/'.join(rights)} config.audit_log")
    return problems
