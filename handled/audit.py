"""The audit trail: who did what to whom, when and from where (config.audit_log).

The actor is kept by id and as text (no foreign key), so deleting a user keeps the trail
unchanged; the table is append-only (migration 0006: a trigger refuses UPDATE, DELETE
and TRUNCATE, and the runtime role has neither right).
Who acted and from which address come from the context's actor: a signed-in user
is recorded by id and email, the CLI operator by its label ("cli"), an anonymous
visitor by nothing but the address.
"""

from __future__ import annotations

from handled.context import Actor, Context
from handled.models import AuditLog


def actor_text(actor: Actor) -> str | None:
    """The text the trail keeps for ``actor``: its email, or the label of a system actor."""
    return actor.label if actor.system else actor.email


def record(ctx: Context, action: str, target_type: str | None = None, target_id=None,
           target_label: str | None = None, details: dict | None = None) -> AuditLog:
    """Write one audit row for the context's actor."""
    actor = ctx.actor
    return AuditLog.create(
        actor_id=actor.id, actor_email=actor_text(actor), action=action, target_type=target_type,
        target_id=None if target_id is None else str(target_id), target_label=target_label,
        ip=actor.address, details=details or {})

