"""Roles and their permission matrix. A permission change affects every holder of
the role at once (their cached entries are dropped after the change commits).
Changes take the caller's ``Context`` first; its actor is recorded in the audit trail.

Who may change a role (refusals are audited as ``role.<action>.refused``):

* a role is created or changed only with permissions the actor holds, and a role
  holding a permission the actor lacks is neither changed nor deleted by that actor;
* nobody changes or deletes a role they hold themselves (that would change their
  own permissions), except a holder of ``admin``, who already has everything;
* the last role granting ``manage_roles`` or ``manage_users`` is never deleted nor
  loses that permission, whoever asks (the CLI operator too).

Locks: a change holds its role row FOR UPDATE from its first read to its commit, and a
grant (users.py) holds the granted roles FOR SHARE, so a user granted a role while a
permission is removed from it either is a holder the update sees (and invalidates) or
is granted after the update committed (and reads the new permissions). Changes that
may remove the last grant of a guarded permission also take one advisory lock.
"""

from __future__ import annotations

import re

from peewee import IntegrityError, fn

from handled import audit
from handled.auth import session_cache
from handled.auth.access import audited_refusals, refusal
from handled.context import Actor, Context
from handled.db import is_serial_id, primary_db
from handled.errors import Conflict, FieldChecker, Forbidden, HandledError, NotFound
from handled.models import Permission, Role, RolePermission, User, UserRole

CODE_PATTERN = re.compile(r"^[a-z][a-z0-9_]{1,40}$")
FULL_ACCESS_ROLE = "admin"  # always holds every permission, so nobody can lock everyone out
GUARDED_PERMISSIONS = ("manage_roles", "manage_users")  # some role always grants each of them
GRANTS_LOCK_KEY = 4_004_002  # advisory lock serialising changes that may remove the last grant of one

# Test seam: called with the role id inside update_role's transaction, just before it commits.
before_role_commit: list = []


def all_permissions() -> list[Permission]:
    return list(Permission.select().order_by(Permission.category, Permission.code))


def list_roles() -> list[dict]:
    """Every role with its permission codes and how many users hold it."""
    holders = dict(UserRole.select(UserRole.role, fn.COUNT(UserRole.user)).group_by(UserRole.role).tuples())
    matrix: dict[int, list[str]] = {}
    for role_id, code in (RolePermission.select(RolePermission.role, Permission.code)
                          .join(Permission).tuples()):
        matrix.setdefault(role_id, []).append(code)
    return [{"role": role, "permissions": sorted(matrix.get(role.id, [])), "holders": holders.get(role.id, 0)}
            for role in Role.select().order_by(Role.is_system.desc(), Role.code)]


def get_role(role_id: int) -> Role:
    role = Role.get_or_none(Role.id == role_id) if is_serial_id(role_id) else None
    if role is None:
        raise NotFound(f"There is no role with the id {role_id}; it may have been deleted.",
                       hint="The list of roles shows every role.")
    return role


def role_holders(role_id: int, limit: int = 10) -> tuple[int, list[User]]:
    """How many users hold the role, and the first ``limit`` of them by name (for a confirmation page)."""
    holders = User.select().join(UserRole).where(UserRole.role == role_id)
    return holders.count(), list(holders.order_by(fn.lower(User.name), User.id).limit(limit))


def why_not_delete(actor: Actor, role: Role) -> str | None:
    """For the pages: the sentence refusing ``actor`` the deletion of ``role``, or None when it is offered
    (the last-grant rule is decided by ``delete_role`` under its lock)."""
    if role.is_system:
        return f"{role.name} is a system role and cannot be deleted."
    return why_not_change(actor, role, role_permission_codes(role.id), set(), "delete")


def role_permission_codes(role_id: int) -> set[str]:
    return {p.code for p in Permission.select().join(RolePermission).where(RolePermission.role == role_id)}


def _permissions_by_code(codes) -> list[Permission]:
    codes = set(codes or [])
    found = list(Permission.select().where(Permission.code.in_(list(codes)))) if codes else []
    unknown = codes - {p.code for p in found}
    if unknown:
        raise HandledError(f"Unknown permission(s): {', '.join(sorted(unknown))}.")
    return found


def _lock_role(role_id: int) -> Role:
    """Hold the role row (FOR UPDATE) until the transaction ends; every read after it sees
    grants and changes committed before it."""
    primary_db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (GRANTS_LOCK_KEY,))
    if primary_db.execute_sql("SELECT id FROM config.roles WHERE id = %s FOR UPDATE", (role_id,)).fetchone() is None:
        raise NotFound(f"There is no role with the id {role_id}; it may have been deleted.")
    return get_role(role_id)


def held_role_codes(actor: Actor) -> set[str]:
    if actor.id is None:
        return set()
    return {r.code for r in Role.select(Role.code).join(UserRole).where(UserRole.user == actor.id)}


def why_not_change(actor: Actor, role: Role | None, before: set[str], after: set[str], verb: str) -> str | None:
    """The sentence refusing ``actor`` this change of ``role`` (None: a new role), or None when allowed."""
    if actor.system:
        return None
    lacking = sorted(code for code in after - before if not actor.can(code))
    if lacking:
        return f"You cannot give a role permissions you do not hold yourself: {', '.join(lacking)}."
    if role is None:
        return None
    lacking = sorted(code for code in before | after if not actor.can(code))
    if lacking:
        return (f"You cannot {verb} the role {role.code}: it holds permissions you do not hold "
                f"({', '.join(lacking)}).")
    held = held_role_codes(actor)
    if role.code in held and FULL_ACCESS_ROLE not in held:
        return (f"You cannot {verb} the role {role.code}: it is a role you hold yourself, so it would change "
                "your own permissions; ask another administrator.")
    return None


def _refuse_unless_allowed(ctx: Context, role: Role | None, before: set[str], after: set[str], verb: str,
                           action: str, label: str) -> None:
    sentence = why_not_change(ctx.actor, role, before, after, verb)
    if sentence:
        raise refusal(Forbidden(sentence), action, "role", role.id if role else None, label,
                      {"permissions": sorted(after)})


def _refuse_last_grant(role: Role, removed: set[str], action: str) -> None:
    """Refuse (409, audited) removing the only remaining grant of a guarded permission
    (call with GRANTS_LOCK_KEY held, see ``_lock_role``)."""
    for code in GUARDED_PERMISSIONS:
        if code not in removed:
            continue
        elsewhere = (RolePermission.select().join(Permission)
                     .where((Permission.code == code) & (RolePermission.role != role.id)).exists())
        if not elsewhere:
            raise refusal(Conflict(f"{role.name} is the last role that grants {code}; give it to another role first."),
                          action, "role", role.id, role.code, {"permission": code})


def may_delete(actor: Actor, role: Role, permissions: set[str]) -> bool:
    """For the pages: whether to offer this role's Delete button (the service decides)."""
    return not role.is_system and why_not_change(actor, role, permissions, set(), "delete") is None


def _code(code: str) -> str:
    code = (code or "").strip().lower()
    if not CODE_PATTERN.match(code):
        raise HandledError("A role code is 2-41 lowercase letters, digits or underscores, starting with a letter.")
    return code


def _name(name: str) -> str:
    if not (name or "").strip():
        raise HandledError("Name is required.")
    return name.strip()


@audited_refusals
def create_role(ctx: Context, code: str, name: str, description: str = "", permission_codes=()) -> Role:
    """Every refused field (code, name, permissions) is reported at once (``InvalidFields``)."""
    check = FieldChecker()
    code, name = check.value("code", _code, code), check.value("name", _name, name)
    permissions = check.value("permissions", _permissions_by_code, permission_codes)
    check.done()
    _refuse_unless_allowed(ctx, None, set(), {p.code for p in permissions}, "create", "role.create.refused", code)
    try:
        with primary_db.atomic():
            role = Role.create(code=code, name=name, description=(description or "").strip())
            for permission in permissions:
                RolePermission.create(role=role, permission=permission)
            audit.record(ctx, "role.create", "role", role.id, code,
                         {"permissions": sorted(p.code for p in permissions)})
    except IntegrityError:
        raise Conflict(f"A role with the code {code} already exists.") from None
    return role


@audited_refusals
def update_role(ctx: Context, role_id: int, name: str, description: str, permission_codes) -> Role:
    """Rename a role and replace its permission set; every holder is re-checked at once."""
    get_role(role_id)
    check = FieldChecker()
    name = check.value("name", _name, name)
    permissions = check.value("permissions", _permissions_by_code, permission_codes)
    check.done()
    new_codes = {p.code for p in permissions}
    with primary_db.atomic():
        role = _lock_role(role_id)
        before = role_permission_codes(role_id)
        _refuse_unless_allowed(ctx, role, before, new_codes, "change", "role.update.refused", role.code)
        if role.code == FULL_ACCESS_ROLE and new_codes != {p.code for p in all_permissions()}:
            raise HandledError("The admin role always holds every permission; create another role for less.")
        _refuse_last_grant(role, before - new_codes, "role.update.refused")
        Role.update(name=name, description=(description or "").strip()).where(Role.id == role_id).execute()
        RolePermission.delete().where(RolePermission.role == role_id).execute()
        for permission in permissions:
            RolePermission.create(role=role_id, permission=permission)
        holders = [ur.user_id for ur in UserRole.select(UserRole.user).where(UserRole.role == role_id)]
        audit.record(ctx, "role.update", "role", role_id, role.code,
                     {"added": sorted(new_codes - before), "removed": sorted(before - new_codes)})
        for hook in before_role_commit:
            hook(role_id)
    if before != new_codes:
        session_cache.invalidate(user_ids=holders)
    return get_role(role_id)


@audited_refusals
def delete_role(ctx: Context, role_id: int) -> str:
    role = get_role(role_id)
    if role.is_system:
        raise HandledError(f"{role.name} is a system role and cannot be deleted.")
    with primary_db.atomic():
        role = _lock_role(role_id)
        before = role_permission_codes(role_id)
        _refuse_unless_allowed(ctx, role, before, set(), "delete", "role.delete.refused", role.code)
        _refuse_last_grant(role, before, "role.delete.refused")
        holders = [ur.user_id for ur in UserRole.select(UserRole.user).where(UserRole.role == role_id)]
        audit.record(ctx, "role.delete", "role", role_id, role.code, {"holders": len(holders)})
        Role.delete().where(Role.id == role_id).execute()
    session_cache.invalidate(user_ids=holders)
    return role.code
