"""What the integrations tests read back after an import: workspace tables, run history, refusals
(and the good import a refusal test starts from)."""

from __future__ import annotations

from pathlib import Path

from psycopg2 import sql

from handled.context import Context
from handled.db import data_db
from handled.integrations.service import import_file
from handled.models import ImportRun


def table_rows(target: str, order_by: str = "1, 2") -> list[tuple]:
    with data_db.connection().cursor() as cur:
        cur.execute(sql.SQL("SELECT * FROM {} ORDER BY " + order_by).format(
            sql.Identifier("workspace", target)))
        return cur.fetchall()


def table_digest(target: str) -> tuple[int, str]:
    """Row count and md5 of every row's text in order: equal digests, equal tables."""
    with data_db.connection().cursor() as cur:
        cur.execute(sql.SQL("SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) "
                            "FROM {} t").format(sql.Identifier("workspace", target)))
        return cur.fetchone()


def last_run() -> ImportRun:
    return ImportRun.select().order_by(ImportRun.id.desc()).first()


def seed_import(ctx: Context, integration_id: str, path: Path, **options):
    """The good import a refusal test starts from: it must succeed and leave rows in its table,
    so that "the refused file changed nothing" is checked against a table holding something
    (a refusal that emptied it would show)."""
    outcome = import_file(ctx, integration_id, path, **options)
    assert outcome.status == "succeeded" and outcome.rows_written > 0, outcome
    return outcome


def assert_refused(ctx: Context, integration_id: str, path: Path, target: str, *, message: str | None = None,
                   rejected: list[tuple[int, str]] | None = None, file_name: str | None = None,
                   partial: bool = False, table_empty: bool = False):
    """Import ``path`` expecting a refusal: table byte-for-byte unchanged, history says why.

    The table must hold rows before (``seed_import`` first), unless ``table_empty=True`` says the
    test is about a refusal on an empty table: then it must be empty before and after."""
    before = table_digest(target)
    if table_empty:
        assert before[0] == 0, f"workspace.{target} holds {before[0]} rows, but table_empty=True"
    else:
        assert before[0] > 0, (f"workspace.{target} is empty before the refused import, so 'unchanged' would "
                               "prove little: seed it with seed_import(), or pass table_empty=True")
    outcome = import_file(ctx, integration_id, path, file_name=file_name, partial=partial)
    assert outcome.status == "failed", outcome
    assert table_digest(target) == before
    run = ImportRun.get_by_id(outcome.run_id)
    assert run.status == "failed" and run.finished_at is not None
    if message is not None:
        assert message in run.message, run.message
    if rejected is not None:
        found = [(r["line"], r["column"]) for r in run.rejected_rows]
        assert found == rejected, run.rejected_rows
        assert run.rows_rejected == len(rejected)
    return run
