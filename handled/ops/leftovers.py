"""After a split, the old single database (now DATA) still holds the copied-from
config and customer schemas: a frozen snapshot, useful until the switch is
verified, misleading afterwards (``flask db check`` flags it). ``prune_leftovers``
drops the other side's schemas from each database of a split setup."""

from __future__ import annotations

from psycopg2 import sql

from handled.context import Context
from handled.db import direct_connection
from handled.models import SCHEMAS
from handled.ops import OpsError
from handled.schema import migrations
from handled.schema.catalog import existing_schemas
from handled.settings import Settings


def leftovers(settings: Settings) -> list[tuple[str, object, list[str]]]:
    """(side, config, schemas of the other side found there) for each database."""
    if not settings.split_db_mode:
        raise OpsError("Leftover schemas only exist in split mode (SPLIT_DB_MODE=true); in single mode "
                       "one database rightly holds all four schemas.")
    found = []
    for side in ("primary", "data"):
        config = settings.direct_database(side)
        other = "data" if side == "primary" else "primary"
        unwanted = {*SCHEMAS[other], migrations.TRACKING_SCHEMAS[other]}
        with direct_connection(config, "prune-leftovers") as conn:
            present = sorted(existing_schemas(conn) & unwanted)
        found.append((side, config, present))
    return found


def prune_leftovers(ctx: Context, dry_run: bool = True) -> list[str]:
    """Drop the other side's schemas from each database; returns one line per schema."""
    done = []
    for side, config, schemas in leftovers(ctx.settings):
        if schemas and not dry_run:
            with direct_connection(config, "prune-leftovers") as conn, conn.cursor() as cur:
                cur.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(
                    sql.SQL(", ").join(sql.Identifier(s) for s in schemas)))
        verb = "would drop" if dry_run else "dropped"
        done += [f"{side} database {config.display()}: {verb} schema {s}" for s in schemas]
    return done
