"""``flask users``, ``flask roles`` and ``flask sessions``: thin commands over the account services.

Each command builds the CLI context (the operator, a system actor: the audit trail names it "cli:<os user>")
and calls one service; ``HandledGroup`` turns a ``HandledError`` into one line and exit code 1.
"""

from __future__ import annotations

import sys

import click

from handled.auth import login, roles, session_cache, sessions, users
from handled.cli_support import HandledGroup
from handled.context import cli_context
from handled.errors import HandledError, NotFound

users_cli = HandledGroup("users", help="Staff accounts: create, list, disable, enable, delete, reset passwords, unlock sign-in.")
roles_cli = HandledGroup("roles", help="Roles and their permissions.")
sessions_cli = HandledGroup("sessions", help="Server-side sign-in sessions.")

PENDING_LINE = ("Redis could not be reached: the session cache is not yet invalidated; the change is recorded "
                "as pending in PRIMARY and applied by the next handled process that reaches Redis (within "
                "SESSION_CACHE_TTL at worst; see the count on /system).")


def _say_if_pending(*_args, **_kwargs):
    """After any command of these groups: one line if a cache invalidation is left pending."""
    if session_cache.take_pending_notice():
        click.echo(PENDING_LINE)


for _group in (users_cli, roles_cli, sessions_cli):
    _group.result_callback()(_say_if_pending)


def _user_id(email: str) -> int:
    user = users.find_user_by_email(email)
    if user is None:
        raise NotFound(f"No user has the email {email}; see `flask users list`.")
    return user.id


@users_cli.command("create")
@click.argument("email")
@click.option("--name", required=True, help="Full name shown in the pages.")
@click.option("--role", "role_codes", multiple=True, help="Role code (repeatable), e.g. admin; see `flask roles list`.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input (first line).")
def create_command(email, name, role_codes, password_stdin):
    """Create a user. Without --password-stdin a temporary password is printed once."""
    password = sys.stdin.readline().rstrip("\n") if password_stdin else None
    if password_stdin and not password:
        raise HandledError("--password-stdin was given but standard input held no password.")
    user, generated = users.create_user(cli_context(), email, name, role_codes, password=password)
    click.echo(f"created {user.email} (id {user.id}) with roles: {', '.join(role_codes) or 'none'}")
    if generated:
        click.echo(f"temporary password (shown once, must be changed at first sign-in): {generated}")


@users_cli.command("list")
@click.option("--search", default="", help="Part of an email or name.")
def list_command(search):
    """List users with their roles and state."""
    found, total = users.list_users(search, 1, 10_000)
    for user in found:
        state = "disabled" if user.disabled else "active"
        click.echo(f"{user.id:>5}  {user.email:<35} {state:<8} {','.join(users.role_codes_of(user.id)) or '-':<25} {user.name}")
    click.echo(f"{total} user(s)")


@users_cli.command("disable")
@click.argument("email")
def disable_command(email):
    """Disable a user and end all their sessions at once."""
    users.set_disabled(cli_context(), _user_id(email), True)
    click.echo(f"disabled {email}; their sessions are ended")


@users_cli.command("enable")
@click.argument("email")
def enable_command(email):
    """Enable a disabled user."""
    users.set_disabled(cli_context(), _user_id(email), False)
    click.echo(f"enabled {email}")


@users_cli.command("delete")
@click.argument("email")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def delete_command(email, yes):
    """Delete a user (their sessions go too; the audit trail keeps their email)."""
    user_id = _user_id(email)
    if not yes:
        click.confirm(f"Delete {email} for good?", abort=True)
    users.delete_user(cli_context(), user_id)
    click.echo(f"deleted {email}")


@users_cli.command("reset-password")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, help="Read the temporary password from standard input.")
def reset_password_command(email, password_stdin):
    """Set a temporary password (to be changed at next sign-in) and end all sessions."""
    given = sys.stdin.readline().rstrip("\n") if password_stdin else None
    password = users.reset_password(cli_context(), _user_id(email), given or None)
    click.echo(f"reset the password of {email}; their sessions are ended")
    if not given:
        click.echo(f"temporary password (shown once): {password}")


@users_cli.command("unlock")
@click.argument("email")
def unlock_command(email):
    """Forget the account's failed sign-ins (the throttle's delay and refused addresses); the password stays."""
    before = users.unlock_user(cli_context(), _user_id(email))
    if before.failures or before.refused_addresses:
        click.echo(f"unlocked {email}: {before.failures} failed sign-in(s) forgotten, "
                   f"{len(before.refused_addresses)} address(es) no longer refused")
    else:
        click.echo(f"sign-in to {email} was not throttled; nothing to unlock")


@users_cli.command("ensure-admin")
def ensure_admin_command():
    """Create the first administrator from HANDLED_ADMIN_EMAIL / HANDLED_ADMIN_PASSWORD if none exists."""
    created = login.ensure_admin(cli_context())
    if created is None:
        click.echo("an active administrator exists; nothing to do")
        return
    email, generated = created
    click.echo(f"created the first administrator {email}")
    if generated:
        click.echo(f"generated password (shown once, must be changed at first sign-in): {generated}")


@roles_cli.command("list")
def roles_list_command():
    """Roles, whether they are system roles, their holders and permissions."""
    for row in roles.list_roles():
        role = row["role"]
        kind = "system" if role.is_system else "custom"
        click.echo(f"{role.code:<16} {kind:<7} {row['holders']:>3} user(s)  {', '.join(row['permissions']) or '-'}")


@sessions_cli.command("purge")
def purge_command():
    """Delete sessions past their idle or absolute expiry."""
    count = sessions.purge_expired(cli_context().settings)
    click.echo(f"purged {count} expired session(s)")



@sessions_cli.command("end")
@click.option("--all", "end_all", is_flag=True, help="End every session of every user.")
@click.option("--user", "email", help="End every session of this user (email).")
def end_command(end_all, email):
    """End sessions at once: every one (--all, e.g. after a restore) or one user's (--user EMAIL)."""
    if end_all == bool(email):
        raise click.UsageError("Give either --all or --user EMAIL.")
    user_id = _user_id(email) if email else None
    ended, _pending = sessions.end_sessions(cli_context(), user_id)
    click.echo(f"ended {ended} session(s)" + (f" of {email}" if email else " of every user"))
