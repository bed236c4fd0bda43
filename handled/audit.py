"""The audit trail: who did what to whom, when and from where (config.audit_log).

The actor is kept by id and as text (no foreign key), so deleting a user keeps the trail
unchanged; the table is append-only (migration 0006: a trigger refuses UPDATE, DELETE
and TRUNCATE, and the runtime role has neither right).
Who acted and from which address come from the context's actor: a signed-in user
is recorded by id and email, the CLI operator by its name (``cli:<os user>``), a job
by the user who queued it, an anonymous visitor by nothing but the address.

``record`` writes through the pooled PRIMARY, inside the caller's transaction.
``record_in`` is for the operations that replace or create PRIMARY itself
(migrate, rollback, restore, split, unsplit): it writes after the operation
succeeded, into the database named, and skips with a warning in the log when that
database has no ``config.audit_log`` yet (a fresh database) or does not answer.
"""

from __future__ import annotations

import logging

from psycopg2.extras import Json

from handled.context import Actor, Context
from handled.db import ConnectionProblem, direct_connection
from handled.models import AuditLog
from handled.settings import DatabaseConfig
from handled.timeutil import utcnow

log = logging.getLogger("handled.audit")


def actor_text(actor: Actor) -> str | None:
    """The text the trail keeps for ``actor``: its email, or the name of a system actor."""
    return actor.label if actor.system else actor.email


def record(ctx: Context, action: str, target_type: str | None = None, target_id=None,
           target_label: str | None = None, details: dict | None = None) -> AuditLog:
    """Write one audit row for the context's actor."""
    actor = ctx.actor
    return AuditLog.create(
        actor_id=actor.id, actor_email=actor_text(actor), action=action, target_type=target_type,
        target_id=None if target_id is None else str(target_id), target_label=target_label,
        ip=actor.address, details=details or {})


def record_in(configs: DatabaseConfig | list[DatabaseConfig], ctx: Context, action: str,
              target_type: str | None = None, target_id=None, target_label: str | None = None,
              details: dict | None = None) -> bool:
    """Write one audit row into the config.audit_log of each database in ``configs`` (the same
    row, same time, so a split's source and target stay identical), over connections of their own.

    Returns False, with a warning in the log, when a row could not be written (no
    config.audit_log there yet, or the database does not answer): the operation it
    records has already succeeded and is not undone for want of its audit row.
    """
    actor = ctx.actor
    occurred_at = utcnow()
    written, seen = True, set()
    for config in configs if isinstance(configs, list) else [configs]:
        if config.identity in seen:
            continue
        seen.add(config.identity)
        try:
            with direct_connection(config, "audit") as conn, conn.cursor() as cur:
                cur.execute("SELECT to_regclass('config.audit_log')")
                if cur.fetchone()[0] is None:
                    log.warning("%s by %s not recorded in %s: it has no config.audit_log yet (PRIMARY is not "
                                "migrated)", action, actor_text(actor), config.display())
                    written = False
                    continue
                cur.execute("INSERT INTO config.audit_log (occurred_at, actor_id, actor_email, action, target_type, "
                            "target_id, target_label, ip, details) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                            (occurred_at, actor.id, actor_text(actor), action, target_type,
                             None if target_id is None else str(target_id), target_label, actor.address,
                             Json(details or {})))
        except ConnectionProblem as exc:
            log.warning("%s by %s not recorded: %s", action, actor_text(actor), exc)
            written = False
    return written
