"""Roles and their permission matrix. A permission change affects every holder of
the role at once (their cached entries are dropped after the change commits).
Changes take the caller's ``Context`` first; its actor is recorded in the audit trail."""

from __future__ import annotations

import re

from peewee import IntegrityError, fn

from handled import audit
from handled.auth import session_cache
from handled.context import Context
from handled.db import primary_db
from handled.errors import Conflict, HandledError, NotFound
from handled.models import Permission, Role, RolePermission, UserRole

CODE_PATTERN = re.compile(r"^[a-z][a-z0-9_]{1,40}$")
FULL_ACCESS_ROLE = "admin"  # always holds every permission, so nobody can lock everyone out

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
    role = Role.get_or_none(Role.id == role_id)
    if role is None:
        raise NotFound(f"Role {role_id} does not exist (it may have been deleted).")
    return role


def role_permission_codes(role_id: int) -> set[str]:
    return {p.code for p in Permission.select().join(RolePermission).where(RolePermission.role == role_id)}


def _permissions_by_code(codes) -> list[Permission]:
    codes = set(codes or [])
    found = list(Permission.select().where(Permission.code.in_(list(codes)))) if codes else []
    unknown = codes - {p.code for p in found}
    if unknown:
        raise HandledError(f"Unknown permission(s): {', '.join(sorted(unknown))}.")
    return found


def create_role(ctx: Context, code: str, name: str, description: str = "", permission_codes=()) -> Role:
    code = (code or "").strip().lower()
    if not CODE_PATTERN.match(code):
        raise HandledError("A role code is 2-41 lowercase letters, digits or underscores, starting with a letter.")
    if not (name or "").strip():
        raise HandledError("Give the role a name.")
    permissions = _permissions_by_code(permission_codes)
    try:
        with primary_db.atomic():
            role = Role.create(code=code, name=name.strip(), description=(description or "").strip())
            for permission in permissions:
                RolePermission.create(role=role, permission=permission)
            audit.record(ctx, "role.create", "role", role.id, code,
                         {"permissions": sorted(p.code for p in permissions)})
    except IntegrityError:
        raise Conflict(f"A role with the code {code} already exists.") from None
    return role


def update_role(ctx: Context, role_id: int, name: str, description: str, permission_codes) -> Role:
    """Rename a role and replace its permission set; every holder is re-checked at once."""
    role = get_role(role_id)
    if not (name or "").strip():
        raise HandledError("Give the role a name.")
    permissions = _permissions_by_code(permission_codes)
    new_codes = {p.code for p in permissions}
    with primary_db.atomic():
        before = role_permission_codes(role_id)
        if role.code == FULL_ACCESS_ROLE and new_codes != {p.code for p in all_permissions()}:
            raise HandledError("The admin role always holds every permission; create another role for less.")
        Role.update(name=name.strip(), description=(description or "").strip()).where(Role.id == role_id).execute()
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


def delete_role(ctx: Context, role_id: int) -> str:
    role = get_role(role_id)
    if role.is_system:
        raise HandledError(f"{role.name} is a system role and cannot be deleted.")
    with primary_db.atomic():
        holders = [ur.user_id for ur in UserRole.select(UserRole.user).where(UserRole.role == role_id)]
        audit.record(ctx, "role.delete", "role", role_id, role.code, {"holders": len(holders)})
        Role.delete().where(Role.id == role_id).execute()
    session_cache.invalidate(user_ids=holders)
    return role.code
