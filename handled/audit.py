"""The audit trail: who did what to whom, when and from where (config.audit_log).

The actor is kept as text as well as a reference, so deleting a user keeps the trail.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar

from flask import has_request_context, request

from handled.models import AuditLog


# Who acts when there is no signed-in request user (e.g. "cli" for flask commands).
_default_actor: ContextVar[str | None] = ContextVar("handled_audit_actor", default=None)


@contextmanager
def acting_as(label: str):
    """Record ``label`` as the actor of audit rows written outside a web request."""
    token = _default_actor.set(label)
    try:
        yield
    finally:
        _default_actor.reset(token)


def request_ip() -> str | None:
    """The client address of the current request (None outside a request)."""
    return request.remote_addr if has_request_context() else None


def _request_actor() -> tuple[int | None, str | None]:
    if not has_request_context():
        return None, _default_actor.get()
    from handled.auth import current_user

    if current_user and current_user.is_authenticated:
        return current_user.id, current_user.email
    return None, None


def record(action: str, target_type: str | None = None, target_id=None, target_label: str | None = None,
           details: dict | None = None, *, actor_id: int | None = None, actor_email: str | None = None) -> AuditLog:
    """Write one audit row for the current request's user (or the actor given, e.g. from the CLI)."""
    if actor_id is None and actor_email is None:
        actor_id, actor_email = _request_actor()
    return AuditLog.create(
        actor=actor_id, actor_email=actor_email, action=action, target_type=target_type,
        target_id=None if target_id is None else str(target_id), target_label=target_label,
        ip=request_ip(), details=details or {})
