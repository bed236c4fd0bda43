"""What the DATA database holds per integration (row counts for the overview)."""

from __future__ import annotations

from psycopg2 import sql

from handled.db import data_db
from handled.integrations.registry import all_integrations


def table_row_counts() -> dict[str, int]:
    """Exact row count of each integration's table, keyed by integration id."""
    counts = {}
    with data_db.connection().cursor() as cur:
        for integration in all_integrations():
            cur.execute(sql.SQL("SELECT count(*) FROM {}").format(
                sql.Identifier("workspace", integration.target)))
            counts[integration.id] = cur.fetchone()[0]
    return counts
