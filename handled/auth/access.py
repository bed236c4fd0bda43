"""Who may act on whom: the rules the user and role services share.

* An actor acts on another user (details, roles, password, disable/enable, delete,
  sessions) only when every permission that user holds is one the actor holds too:
  nobody resets, disables or signs out someone more powerful than themself. The CLI
  operator (a system actor) may act on anyone; a user acting on themself is not
  "another user".
* Locks: the check and the change run in one transaction that holds the target's
  user row (FOR UPDATE) and the rows of the roles it holds (FOR SHARE). A role update
  takes its role row FOR UPDATE, and a grant takes the granted roles FOR SHARE, so a
  grant, a role update and a check on the same role never interleave.
* A refusal is a ``HandledError`` that carries its audit row (``refusal``); the
  ``audited_refusals`` decorator writes that row in a transaction of its own after
  the service's transaction rolled back, so the trail keeps every refused attempt
  while the refused change leaves nothing behind.
"""

from __future__ import annotations

import functools

from handled import audit
from handled.context import Actor
from handled.db import primary_db
from handled.errors import Forbidden, HandledError, NotFound
from handled.models import Permission, Role, RolePermission, User, UserRole

_LOCK_USER_SQL = "SELECT id FROM config.users WHERE id = %s FOR UPDATE"
_LOCK_ROLES_SQL = "SELECT id FROM config.roles WHERE id = ANY(%s) ORDER BY id FOR SHARE"
_LOCK_ROLES_OF_USER_SQL = ("SELECT r.id FROM config.roles r JOIN config.user_roles ur ON ur.role_id = r.id "
                           "WHERE ur.user_id = %s ORDER BY r.id FOR SHARE OF r")


def refusal(error: HandledError, action: str, target_type: str, target_id, target_label: str | None,
            details: dict | None = None) -> HandledError:
    """Attach the audit row of a refused attempt to ``error`` (written by ``audited_refusals``)."""
    error.refused_audit = (action, target_type, target_id, target_label,
                           {"reason": str(error), **(details or {})})
    return error


def audited_refusals(service):
    """Record the audit row of a refusal raised by ``service`` once its transaction has rolled back."""
    @functools.wraps(service)
    def run(ctx, *args, **kwargs):
        try:
            return service(ctx, *args, **kwargs)
        except HandledError as error:
            entry = getattr(error, "refused_audit", None)
            if entry is None:
                raise
            with primary_db.atomic():
                audit.record(ctx, *entry)
            raise
    return run


def permission_codes_of(user_id: int) -> set[str]:
    """The union of the permissions of every role ``user_id`` holds (disabled or not)."""
    return {p.code for p in Permission.select(Permission.code).join(RolePermission)
            .join(UserRole, on=(UserRole.role == RolePermission.role)).where(UserRole.user == user_id)}


def missing_to_act_on(actor: Actor, user_id: int) -> list[str]:
    """The permissions ``user_id`` holds that ``actor`` does not; empty when the actor may act."""
    if actor.system or (actor.id is not None and actor.id == user_id):
        return []
    return sorted(code for code in permission_codes_of(user_id) if not actor.can(code))


def refusal_sentence(verb: str, email: str, missing: list[str]) -> str:
    return (f"You cannot {verb} {email}: that account holds permissions you do not hold "
            f"({', '.join(missing)}).")


def why_not_act_on(actor: Actor, user: User, verb: str = "change") -> str | None:
    """For the pages: the sentence a refusal would give, or None when the actor may act."""
    missing = missing_to_act_on(actor, user.id)
    return refusal_sentence(verb, user.email, missing) if missing else None


def grantable_role_codes(actor: Actor) -> set[str]:
    """For the pages: the roles ``actor`` may grant (every permission of the role is one it holds)."""
    granted: dict[str, set[str]] = {r.code: set() for r in Role.select(Role.code)}
    for code, permission in (RolePermission.select(Role.code, Permission.code).join(Role)
                             .switch(RolePermission).join(Permission).tuples()):
        granted[code].add(permission)
    return {code for code, held in granted.items() if all(actor.can(p) for p in held)}


def lock_roles(role_ids) -> None:
    """Hold these roles (FOR SHARE) until the transaction ends: their permissions cannot change meanwhile."""
    ids = sorted(set(role_ids))
    if ids:
        primary_db.execute_sql(_LOCK_ROLES_SQL, (ids,))


def lock_target(ctx, user_id: int, action: str, verb: str) -> User:
    """Inside the caller's transaction: lock ``user_id`` and its roles, then refuse (403, audited)
    unless the context's actor may act on that user. Returns the user as locked."""
    cursor = primary_db.execute_sql(_LOCK_USER_SQL, (user_id,))
    if cursor.fetchone() is None:
        raise NotFound(f"User {user_id} does not exist (it may have been deleted).")
    primary_db.execute_sql(_LOCK_ROLES_OF_USER_SQL, (user_id,))
    user = User.get(User.id == user_id)
    missing = missing_to_act_on(ctx.actor, user_id)
    if missing:
        raise refusal(Forbidden(refusal_sentence(verb, user.email, missing)), action, "user", user_id, user.email,
                      {"missing": missing})
    return user
