"""``flask db``: migrations and checks of the PRIMARY and DATA databases.

Thin: parse arguments, call a service in handled.schema, print. The operations
tools' init_app adds ``split``, ``unsplit`` and ``prune-leftovers`` to this same
group (handled/ops/__init__.py, commands in handled/ops/cli.py).
"""

from __future__ import annotations

import click

from handled import audit
from handled.context import app_settings, cli_context
from handled.cli_support import HandledGroup
from handled.schema import migrations, roles
from handled.schema.catalog import create_database_if_missing
from handled.schema.checks import run_checks

TARGET_OPTION = click.option("--target", type=click.Choice(["primary", "data", "all"]), default="all",
                             show_default=True, help="Which database's migrations.")
LOCK_OPTION = click.option("--lock-timeout", type=float, default=30, show_default=True,
                           help="Seconds to wait for another migrator to finish.")

db_cli = HandledGroup("db", help="Migrations and checks of the PRIMARY and DATA databases.")


def _targets(target: str):
    return migrations.resolve_targets(app_settings(), target)


@db_cli.command("migrate")
@TARGET_OPTION
@LOCK_OPTION
@click.option("--dry-run", is_flag=True, help="List what would be applied, change nothing.")
@click.option("--repair", is_flag=True, help="Bring tracking back in line with the real schema where provably safe.")
def migrate_command(target, lock_timeout, dry_run, repair):
    """Apply pending migrations (or repair tracking)."""
    for t in _targets(target):
        if repair:
            changes = migrations.repair(t, dry_run=dry_run, lock_timeout=lock_timeout)
            verb = "would change" if dry_run else "changed"
            click.echo(f"{t.label}: repair {verb} nothing, tracking already agrees." if not changes else
                       "\n".join(f"{verb}: {c}" for c in changes))
            if changes and not dry_run:
                _record("db.repair", t, changes=[str(c) for c in changes])
            continue
        applied = migrations.migrate(t, dry_run=dry_run, lock_timeout=lock_timeout)
        if not applied:
            click.echo(f"{t.label}: up to date.")
        for mid in applied:
            click.echo(f"{t.label}: {'would apply' if dry_run else 'applied'} {mid}")
        if applied and not dry_run:
            _record("db.migrate", t, applied=list(applied))


def _record(action: str, target: migrations.Target, **details) -> None:
    """The audit row of a migration command, written after it succeeded into PRIMARY (which
    may be the database just migrated); skipped with a log line while PRIMARY has no audit log."""
    ctx = cli_context()
    audit.record_in(ctx.settings.direct_database("primary"), ctx, action, "database", target.name,
                    target.config.display(), details)


@db_cli.command("create")
def create_command():
    """Create the database(s) the URLs name, if they do not exist yet."""
    settings = app_settings()
    sides = ["primary", "data"] if settings.split_db_mode else ["primary"]
    for config in [settings.direct_database(side) for side in sides]:   # CREATE DATABASE bypasses a pooler
        created = create_database_if_missing(config)
        click.echo(f"{config.display()}: {'created' if created else 'exists'}")


@db_cli.command("status")
@TARGET_OPTION
def status_command(target):
    """Applied and pending migrations per database; exit 1 if anything is pending or out of sync."""
    dirty = False
    for t in _targets(target):
        status = migrations.target_status(t)
        click.echo(f"{t.label}, tracked in schema {t.tracking_schema}:")
        for state in status.states:
            when = f"  {state.applied_at:%Y-%m-%d %H:%M:%S} UTC" if state.applied_at else ""
            click.echo(f"  {state.verdict:<15} {state.id}{when}")
        for problem in status.problems:
            click.echo(f"  out of sync: {problem}")
        dirty = dirty or bool(status.pending or status.problems)
    if dirty:
        raise SystemExit(1)


@db_cli.command("rollback")
@TARGET_OPTION
@LOCK_OPTION
@click.option("--count", type=click.IntRange(min=1), default=1, show_default=True,
              help="How many of the latest migrations to roll back, per database.")
@click.option("--dry-run", is_flag=True, help="List what would be rolled back, change nothing.")
def rollback_command(target, lock_timeout, count, dry_run):
    """Roll back the latest applied migration(s), newest first."""
    for t in reversed(_targets(target)):
        done = migrations.rollback(t, count=count, dry_run=dry_run, lock_timeout=lock_timeout)
        if not done:
            click.echo(f"{t.label}: nothing to roll back.")
        for mid in done:
            click.echo(f"{t.label}: {'would roll back' if dry_run else 'rolled back'} {mid}")
        if done and not dry_run:
            _record("db.rollback", t, rolled_back=list(done))


@db_cli.command("create-roles")
def create_roles_command():
    """Create the owner, runtime and builder roles of each database, grant, and print the URLs to set.

    The administrator connection comes from DB_ADMIN_URL (environment, never the command line).
    Idempotent: running it again changes nothing and keeps existing passwords."""
    for plan in roles.create_roles(app_settings()):
        made = f"created {', '.join(plan.created)}" if plan.created else "roles existed, brought in line"
        click.echo(f"# database {plan.dbname} ({' + '.join(plan.sides)}): {made}")
        for variable, url in plan.urls:
            click.echo(f"{variable}={url}")
        if plan.passwords:
            click.echo("# the passwords above were generated now and are not shown again; store them in the "
                       "service's environment file.")
        elif any(":PASSWORD@" in url for _, url in plan.urls):
            click.echo("# PASSWORD: the role existed, so its password was left as it is; put the one you set "
                       "(or rerun with DB_OWNER_PASSWORD / DB_RUNTIME_PASSWORD / DB_BUILD_PASSWORD).")


@db_cli.command("check")
@TARGET_OPTION
def check_command(target):
    """Pre-flight: reachability, server version, rights, tracking, schema placement, drift."""
    results = run_checks(app_settings(), target)
    for r in results:
        click.echo(f"[{'ok' if r.ok else 'FAIL'}] {r.target}: {r.name}: {r.detail}")
    if not all(r.ok for r in results):
        raise SystemExit(1)
