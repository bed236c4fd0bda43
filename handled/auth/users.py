"""User accounts: create, edit, roles, passwords, disable/enable, delete, sessions.

Every change takes the caller's ``Context`` first: its actor is recorded in the
audit trail and decides which roles may be granted; its settings rule passwords.

Every change that must end sessions or change permissions commits its PRIMARY
change together with the removal of the sessions (one transaction) and only then
invalidates the shared cache (see session_cache), so once the function returns no
worker accepts the old session or the old permissions.

Acting on another user is allowed only when that user holds no permission the actor
lacks (``access.lock_target``: checked under the target's row and role locks, refusals
audited as ``<action>.refused``); the CLI operator may act on anyone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from peewee import IntegrityError, fn

from handled import audit
from handled.auth import passwords, session_cache, throttle
from handled.auth.access import audited_refusals, lock_roles, lock_target, refusal
from handled.auth.sessions import delete_session, delete_user_sessions, revoke_session
from handled.context import Context
from handled.db import contains_pattern, expected_failures, is_serial_id, primary_db
from handled.errors import Conflict, FieldChecker, Forbidden, HandledError, NotFound
from handled.models import Permission, Role, RolePermission, User, UserRole
from handled.settings import Settings
from handled.timeutil import utcnow

EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
ADMIN_ROLE = "admin"
ADMIN_LOCK_KEY = 4_004_001  # advisory lock serialising changes that may remove the last admin


def normalise_email(email: str) -> str:
    email = (email or "").strip()
    if not email:
        raise HandledError("Email is required.")
    if not EMAIL_PATTERN.match(email):
        raise HandledError(f"'{email}' is not an email address; write it as name@example.com.")
    return email.lower()


def _name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise HandledError("Name is required.")
    return name


def get_user(user_id: int) -> User:
    user = User.get_or_none(User.id == user_id) if is_serial_id(user_id) else None
    if user is None:
        raise NotFound(f"There is no user with the id {user_id}; it may have been deleted.",
                       hint="The list of users shows every account.")
    return user


def find_user_by_email(email: str) -> User | None:
    return User.get_or_none(fn.lower(User.email) == (email or "").strip().lower())


def role_codes_of(user_id: int) -> list[str]:
    return [r.code for r in Role.select().join(UserRole).where(UserRole.user == user_id).order_by(Role.code)]


def _roles_by_code(codes) -> list[Role]:
    codes = sorted(set(codes or []))
    roles = list(Role.select().where(Role.code.in_(codes))) if codes else []
    unknown = set(codes) - {r.code for r in roles}
    if unknown:
        raise HandledError(f"Unknown role(s): {', '.join(sorted(unknown))}; see `flask roles list`.")
    return roles


def _grant_roles(ctx: Context, roles: list[Role], action: str, user_id, email: str) -> None:
    """Inside the granting transaction: hold the roles (FOR SHARE, so a concurrent change of
    their permissions waits for this grant or this grant for it), then refuse (audited) roles
    with permissions the actor does not hold itself, so manage_users alone cannot hand out
    admin; the CLI operator holds them all."""
    lock_roles(r.id for r in roles)
    if not roles or ctx.actor.system:
        return
    granted = {p.code for p in Permission.select().join(RolePermission)
               .where(RolePermission.role.in_([r.id for r in roles]))}
    missing = sorted(code for code in granted if not ctx.actor.can(code))
    if missing:
        raise refusal(Forbidden(f"You cannot grant permissions you do not hold yourself: {', '.join(missing)}."),
                      action, "user", user_id, email, {"roles": sorted(r.code for r in roles), "missing": missing})


def throttled_user_ids(settings: Settings) -> set[int]:
    """The users whose sign-in is throttled now (``throttle.status(...).throttled``)."""
    keys = throttle.throttled_accounts(settings)
    if not keys:
        return set()
    return {u.id for u in User.select(User.id, User.email) if throttle.account_key(u.email) in keys}


# The states the users list filters by, each a condition on config.users given the settings;
# "locked" is sign-in throttled for the account (by the account's delay, or for an address).
USER_STATES = {
    "active": lambda settings: User.disabled == False,  # noqa: E712
    "disabled": lambda settings: User.disabled == True,  # noqa: E712
    "locked": lambda settings: User.id.in_(sorted(throttled_user_ids(settings))),
}


@dataclass
class UserPage:
    users: list[User]
    total: int
    page: int    # the page shown: a page past the end shows the last one
    pages: int


def _user_query(search: str = "", role: str | None = None, state: str | None = None,
                settings: Settings | None = None):
    """Users whose email or name contains ``search`` (taken literally: ``%`` and ``_`` are no
    wildcards), holding the role ``role``, in the state ``state`` (a key of USER_STATES)."""
    query = User.select()
    search = (search or "").strip()
    if search:
        pattern = contains_pattern(search)
        query = query.where(User.email.ilike(pattern) | User.name.ilike(pattern))
    if role:
        holders = UserRole.select(UserRole.user).join(Role).where(Role.code == role)
        query = query.where(User.id.in_(holders))
    if state:
        query = query.where(USER_STATES[state](settings))
    return query


def list_users(search: str = "", page: int = 1, per_page: int = 25) -> tuple[list[User], int]:
    found = page_of_users(search, page, per_page)
    return found.users, found.total


def page_of_users(search: str = "", page: int = 1, per_page: int = 25, role: str | None = None,
                  state: str | None = None, settings: Settings | None = None) -> UserPage:
    """One page of the users matching the filters, by email; a page past the end is the last page.
    The "locked" state needs ``settings`` (the throttle's limits)."""
    query = _user_query(search, role, state, settings)
    total = query.count()
    pages = max((total + per_page - 1) // per_page, 1)
    page = min(max(page, 1), pages)
    return UserPage(list(query.order_by(fn.lower(User.email)).paginate(page, per_page)), total, page, pages)


@audited_refusals
def create_user(ctx: Context, email: str, name: str, role_codes=(), password: str | None = None,
                must_change_password: bool | None = None) -> tuple[User, str | None]:
    """Create an account; without a password a temporary one is generated and returned.
    Every refused field is reported at once (``InvalidFields``: email, name, password, roles)."""
    check = FieldChecker()
    email = check.value("email", normalise_email, email)
    name = check.value("name", _name, name)
    generated = None
    if password is None:
        password = generated = passwords.generate_password()
    else:
        check.value("password", passwords.check_new_password, ctx.settings, password, email or "")
    roles = check.value("roles", _roles_by_code, role_codes)
    check.done()
    try:
        with expected_failures(IntegrityError), primary_db.atomic():
            _grant_roles(ctx, roles, "user.create.refused", None, email)
            user = User.create(email=email, name=name, password_hash=passwords.hash_password(ctx.settings, password),
                               must_change_password=bool(generated) if must_change_password is None
                               else must_change_password)
            for role in roles:
                UserRole.create(user=user, role=role)
            audit.record(ctx, "user.create", "user", user.id, email, {"roles": [r.code for r in roles]})
    except IntegrityError:
        raise Conflict(f"A user with the email {email} already exists.") from None
    return user, generated


@audited_refusals
def update_user(ctx: Context, user_id: int, email: str, name: str) -> User:
    """Change a user's email and name; every refused field is reported at once (``InvalidFields``)."""
    get_user(user_id)
    check = FieldChecker()
    email, name = check.value("email", normalise_email, email), check.value("name", _name, name)
    check.done()
    try:
        with expected_failures(IntegrityError), primary_db.atomic():
            user = lock_target(ctx, user_id, "user.update.refused", "change")
            User.update(email=email, name=name, updated_at=utcnow()).where(User.id == user_id).execute()
            audit.record(ctx, "user.update", "user", user_id, email, {"from": {"email": user.email, "name": user.name}})
    except IntegrityError:
        raise Conflict(f"A user with the email {email} already exists.") from None
    session_cache.invalidate(user_ids=[user_id])
    return get_user(user_id)


def _lock_admins() -> None:
    primary_db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (ADMIN_LOCK_KEY,))


def active_admin_ids() -> set[int]:
    query = (User.select(User.id).join(UserRole).join(Role)
             .where((Role.code == ADMIN_ROLE) & (User.disabled == False)))  # noqa: E712
    return {u.id for u in query}


def _refuse_if_last_admin(user_id: int, verb: str) -> None:
    if active_admin_ids() == {user_id}:
        raise Conflict(f"You cannot {verb} the last active administrator; make another user an admin first.")


@audited_refusals
def set_user_roles(ctx: Context, user_id: int, role_codes) -> list[str]:
    get_user(user_id)
    roles = _roles_by_code(role_codes)
    with primary_db.atomic():
        _lock_admins()
        user = lock_target(ctx, user_id, "user.roles.refused", "change the roles of")
        _grant_roles(ctx, roles, "user.roles.refused", user_id, user.email)
        before = role_codes_of(user_id)
        if ADMIN_ROLE in before and ADMIN_ROLE not in {r.code for r in roles} and not user.disabled:
            _refuse_if_last_admin(user_id, "remove the admin role from")
        UserRole.delete().where(UserRole.user == user_id).execute()
        for role in roles:
            UserRole.create(user=user_id, role=role)
        audit.record(ctx, "user.roles", "user", user_id, user.email,
                     {"from": before, "to": [r.code for r in roles]})
    session_cache.invalidate(user_ids=[user_id])
    return [r.code for r in roles]


@audited_refusals
def reset_password(ctx: Context, user_id: int, new_password: str | None = None) -> str:
    """Set a temporary password the user must change at next sign-in; ends all their sessions."""
    user = get_user(user_id)
    password = new_password or passwords.generate_password()
    if new_password:
        passwords.check_new_password(ctx.settings, new_password, user.email)
    with primary_db.atomic():
        user = lock_target(ctx, user_id, "user.reset_password.refused", "reset the password of")
        User.update(password_hash=passwords.hash_password(ctx.settings, password), must_change_password=True,
                    password_changed_at=utcnow(), updated_at=utcnow()).where(User.id == user_id).execute()
        ended = delete_user_sessions(user_id)
        audit.record(ctx, "user.reset_password", "user", user_id, user.email, {"sessions_ended": ended})
    session_cache.invalidate(user_ids=[user_id])
    throttle.clear(ctx.settings, user.email)  # failure counters only: the known addresses stay
    return password


@audited_refusals
def unlock_user(ctx: Context, user_id: int) -> throttle.Status:
    """Forget the account's failed sign-ins from every address (what a password reset does too,
    without changing the password); returns the throttle's status as it was. The addresses the
    owner signed in from stay known, and an address's own limit (all accounts) is not touched."""
    get_user(user_id)
    with primary_db.atomic():
        user = lock_target(ctx, user_id, "user.unlock.refused", "unlock")
        before = throttle.status(ctx.settings, user.email)
        audit.record(ctx, "user.unlock", "user", user_id, user.email,
                     {"failures": before.failures, "throttled": before.throttled,
                      "refused_addresses": list(before.refused_addresses)})
        throttle.clear(ctx.settings, user.email)
    return before


def change_own_password(ctx: Context, user_id: int, current: str, new: str, keep_session_hash: str) -> int:
    """The user changes their password; every other session of theirs ends."""
    user = get_user(user_id)
    ok, _ = passwords.verify_password(ctx.settings, user.password_hash, current or "")
    if not ok:
        raise HandledError("The current password is not correct.")
    if new == current:
        raise HandledError("The new password must differ from the current one.")
    passwords.check_new_password(ctx.settings, new or "", user.email)
    with primary_db.atomic():
        User.update(password_hash=passwords.hash_password(ctx.settings, new), must_change_password=False,
                    password_changed_at=utcnow(), updated_at=utcnow()).where(User.id == user_id).execute()
        ended = delete_user_sessions(user_id, keep_hash=keep_session_hash)
        audit.record(ctx, "user.change_password", "user", user_id, user.email, {"other_sessions_ended": ended})
    session_cache.invalidate(user_ids=[user_id])
    return ended


def end_other_sessions(ctx: Context, user_id: int, keep_session_hash: str) -> int:
    with primary_db.atomic():
        ended = delete_user_sessions(user_id, keep_hash=keep_session_hash)
        audit.record(ctx, "session.end_others", "user", user_id, None, {"sessions_ended": ended})
    session_cache.invalidate(user_ids=[user_id])
    return ended


@audited_refusals
def set_disabled(ctx: Context, user_id: int, disabled: bool) -> User:
    get_user(user_id)
    with primary_db.atomic():
        _lock_admins()
        user = lock_target(ctx, user_id, "user.disable.refused" if disabled else "user.enable.refused",
                           "disable" if disabled else "enable")
        if disabled:
            _refuse_if_last_admin(user_id, "disable")
            delete_user_sessions(user_id)
        User.update(disabled=disabled, updated_at=utcnow()).where(User.id == user_id).execute()
        audit.record(ctx, "user.disable" if disabled else "user.enable", "user", user_id, user.email)
    session_cache.invalidate(user_ids=[user_id])
    return get_user(user_id)


@audited_refusals
def delete_user(ctx: Context, user_id: int) -> str:
    get_user(user_id)
    with primary_db.atomic():
        _lock_admins()
        user = lock_target(ctx, user_id, "user.delete.refused", "delete")
        _refuse_if_last_admin(user_id, "delete")
        audit.record(ctx, "user.delete", "user", user_id, user.email)
        User.delete().where(User.id == user_id).execute()  # sessions go with it (ON DELETE CASCADE)
    session_cache.invalidate(user_ids=[user_id])
    return user.email


def revoke_own_session(ctx: Context, session_hash: str) -> bool:
    """The actor signs out one of their own sessions; False when it had already ended."""
    if not revoke_session(ctx.actor.id, session_hash):
        return False
    audit.record(ctx, "session.revoke", "session", session_hash[:12], ctx.actor.email)
    return True


@audited_refusals
def revoke_user_session(ctx: Context, user_id: int, session_hash: str) -> bool:
    """An administrator signs out one session of ``user_id``; False when it had already ended."""
    get_user(user_id)
    with primary_db.atomic():
        user = lock_target(ctx, user_id, "session.revoke.refused", "end the sessions of")
        ended = delete_session(user_id, session_hash)
        if ended:
            audit.record(ctx, "session.revoke", "user", user_id, user.email, {"session": session_hash[:12]})
    session_cache.invalidate(token_hashes=[session_hash])
    return ended
