"""Pre-flight checks of each database (``flask db check``) and the status summary
the home page shows."""

from __future__ import annotations

from dataclasses import dataclass

from handled.db import ConnectionProblem, direct_connection
from handled.models import DATA_MODELS, PRIMARY_MODELS, SCHEMAS
from handled.schema import migrations, roles
from handled.schema.catalog import compare_models, existing_schemas
from handled.settings import Settings
from handled.settings_parsers import OLDEST_SERVER_VERSION, ServerVersion

MODELS = {"primary": PRIMARY_MODELS, "data": DATA_MODELS}


@dataclass
class CheckResult:
    target: str
    name: str
    ok: bool
    detail: str


def other_side(target: str) -> str:
    return "data" if target == "primary" else "primary"


def check_target(settings: Settings, target: migrations.Target) -> list[CheckResult]:
    results: list[CheckResult] = []

    def add(name, ok, detail):
        results.append(CheckResult(target.name, name, ok, detail))

    try:
        with direct_connection(target.config, "check") as conn:
            add("reachable", True, target.config.display())
            _check_server_version(conn, settings.db_min_server_version, add)
            _check_rights(conn, target, add)
            if settings.split_db_mode:
                _check_no_foreign_schemas(conn, target, add)
    except ConnectionProblem as exc:
        add("reachable", False, str(exc))
        return results
    try:
        status = migrations.target_status(target)
    except migrations.MigrationError as exc:   # e.g. a role that may not read the tracking table
        add("tracking matches catalog", False, str(exc))
        return results
    problems = status.problems
    pending = [s.id for s in status.pending]
    add("tracking matches catalog", not problems,
        "; ".join(problems) if problems else
        f"{len(status.states) - len(pending)} applied" + (f", {len(pending)} pending: {', '.join(pending)}" if pending else ""))
    if not problems and not pending:
        with direct_connection(target.config, "check") as conn:
            drift = compare_models(conn, MODELS[target.name], SCHEMAS[target.name])
        add("models match catalog", not drift, "; ".join(drift) if drift else "every table, column and key agrees")
    return results


def _check_server_version(conn, minimum: ServerVersion, add) -> None:
    """The server's own version (server_version_num, as the connection reports it) against
    DB_MIN_SERVER_VERSION (by default the oldest release handled runs on)."""
    version = ServerVersion(conn.server_version)
    if version >= minimum:
        add("server version", True, f"PostgreSQL {version}")
    elif minimum.number > OLDEST_SERVER_VERSION:
        add("server version", False, f"PostgreSQL {version}; DB_MIN_SERVER_VERSION asks for {minimum} or newer")
    else:
        add("server version", False, f"PostgreSQL {version}; handled needs {minimum} or newer")


def _check_rights(conn, target, add) -> None:
    with conn.cursor() as cur:
        cur.execute("SELECT has_database_privilege(current_user, current_database(), 'CREATE')")
        can_create_schema = cur.fetchone()[0]
        present = existing_schemas(conn)
        denied = []
        for schema in (*SCHEMAS[target.name], target.tracking_schema):
            if schema in present:
                cur.execute("SELECT has_schema_privilege(current_user, %s, 'CREATE')", (schema,))
                if not cur.fetchone()[0]:
                    denied.append(schema)
            elif not can_create_schema:
                denied.append(f"{schema} (cannot create schemas in this database)")
    add("rights to create", not denied,
        "can create in " + ", ".join((*SCHEMAS[target.name], target.tracking_schema)) if not denied
        else f"the role {target.config.user or 'in use'} may not create in: {', '.join(denied)}")


def _check_no_foreign_schemas(conn, target, add) -> None:
    other = other_side(target.name)
    strays = sorted(existing_schemas(conn) & {*SCHEMAS[other], migrations.TRACKING_SCHEMAS[other]})
    add("no schemas of the other side", not strays,
        f"none of {other}'s schemas here" if not strays else
        f"this is the {target.name} database but it holds {other}'s schemas {', '.join(strays)} (split mode)")


def check_runtime_role(settings: Settings, side: str) -> CheckResult:
    """The role of the side's runtime URL must not be able to create, alter or drop anything,
    nor rewrite the audit log (handled/schema/roles.py)."""
    config = settings.database(side)
    name = "runtime role least privilege"
    sides = (side,) if settings.split_db_mode else ("primary", "data")
    try:
        with direct_connection(config, "check") as conn:
            problems = roles.runtime_problems(conn, sides)
    except ConnectionProblem as exc:
        return CheckResult(side, name, False, str(exc))
    who = f"the runtime role {config.user or '(default user)'} of {config.variable}"
    if problems:
        return CheckResult(side, name, False, f"{who} {'; '.join(problems)}: give it the role "
                                              "'flask db create-roles' made (docs/DEPLOYMENT_CHECKLIST.md)")
    return CheckResult(side, name, True, f"{who} may only read and write rows")


def run_checks(settings: Settings, selection: str = "all") -> list[CheckResult]:
    results = []
    for target in migrations.resolve_targets(settings, selection):
        results += check_target(settings, target)
        results.append(check_runtime_role(settings, target.name))
    return results


def migration_summary(settings: Settings) -> list[dict]:
    """Per database: where it is, server version, applied and pending migrations (for pages)."""
    summary = []
    for target in migrations.resolve_targets(settings, "all"):
        entry = {"target": target.name, "database": target.config.display(), "reachable": False,
                 "server_version": None, "applied": [], "pending": [], "problems": [], "error": None}
        try:
            with direct_connection(target.config, "check") as conn:
                entry["server_version"] = conn.server_version
            status = migrations.target_status(target)
        except ConnectionProblem as exc:
            entry["error"] = str(exc)
        else:
            entry["reachable"] = True
            entry["applied"] = [(s.id, s.applied_at) for s in status.states if s.verdict == "applied"]
            entry["pending"] = [s.id for s in status.pending]
            entry["problems"] = status.problems
        summary.append(entry)
    return summary
