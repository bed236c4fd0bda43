"""Users: list, create, edit, roles, reset password, disable/enable, delete, sessions.

The user page offers no change of an account holding permissions the actor lacks;
``handled.auth.users`` decides (and audits the refusal) whatever the page offered.

A temporary password (a reset, or a new account created without a password) is never shown
by the POST that made it: the POST redirects (303) to a page that shows it once, from
``handled.auth.temporary_passwords``; a reload of that page says it was already shown.
An unknown user id on a page (GET) is a 404 page with a sentence; a POST about a user that
is gone goes back to the list with that sentence."""

from __future__ import annotations

import functools

from flask import flash, make_response, redirect, render_template, request, url_for

from handled.admin import bp
from handled.auth import access, sessions, temporary_passwords, throttle, users
from handled.auth.permissions import permission_required
from handled.context import web_context
from handled.errors import HandledError, InvalidFields, NotFound
from handled.models import Role

PER_PAGE = 25
TEMPORARY_PASSWORD_COOKIE = "handled_temporary_password_key"


def flash_errors(fallback_endpoint: str):
    """Show a HandledError as a flash message and go back (to the user page when there is one)."""
    def decorate(view):
        @functools.wraps(view)
        def run(*args, **kwargs):
            try:
                return view(*args, **kwargs)
            except NotFound as exc:
                flash(str(exc), "error")
                return redirect(url_for("admin.users"))
            except HandledError as exc:
                flash(str(exc), "error")
                return redirect(url_for(fallback_endpoint, **kwargs))
        return run
    return decorate


def _page_number() -> int:
    """The ``page`` argument; anything but a whole number is the first page (one past the end is the
    last page: ``users.page_of_users`` clamps it before it reaches SQL, however large)."""
    value = request.args.get("page", "1").strip()
    return int(value) if value.isascii() and value.isdigit() else 1


def _fields_refused(exc: InvalidFields) -> None:
    flash("Some fields need correcting; see the notes next to them." if len(exc.fields) > 1 else str(exc), "error")


@bp.get("/users", endpoint="users")
@permission_required("manage_users")
def users_list():
    args = request.args
    search, role, state = args.get("q", "").strip(), args.get("role", "").strip(), args.get("state", "").strip()
    all_roles = list(Role.select().order_by(Role.code))
    if role and role not in {r.code for r in all_roles}:
        flash(f"There is no role {role}; the role filter was ignored.", "error")
        role = ""
    if state and state not in users.USER_STATES:
        flash(f"{state} is not a state ({' or '.join(users.USER_STATES)}); the state filter was ignored.", "error")
        state = ""
    settings = web_context().settings
    found = users.page_of_users(search, _page_number(), PER_PAGE, role=role or None, state=state or None,
                                settings=settings)
    return render_template("admin/users.html", users=found.users, total=found.total, page=found.page,
                           pages=found.pages, search=search, role=role, state=state, roles=all_roles,
                           filters={k: v for k, v in {"q": search, "role": role, "state": state}.items() if v},
                           states=list(users.USER_STATES),
                           roles_of={u.id: users.role_codes_of(u.id) for u in found.users},
                           locked=users.throttled_user_ids(settings) if found.users else set())


@bp.route("/users/new", methods=["GET", "POST"])
@permission_required("manage_users")
def user_new():
    all_roles = list(Role.select().order_by(Role.code))
    grantable = access.grantable_role_codes(web_context().actor)

    def page(form, errors, status=200):
        return render_template("admin/user_new.html", roles=all_roles, grantable=grantable, form=form,
                               errors=errors), status

    if request.method == "GET":
        return page({}, {})
    form = request.form
    ctx = web_context()
    try:
        if not form.get("password"):
            temporary_passwords.ready()
        user, generated = users.create_user(ctx, form.get("email", ""), form.get("name", ""),
                                            form.getlist("roles"), password=form.get("password") or None)
    except InvalidFields as exc:
        _fields_refused(exc)
        return page(form, exc.fields, exc.status)
    except HandledError as error:
        flash(str(error), "error")
        return page(form, {}, error.status)
    flash(f"Created {user.email}.", "info")
    if generated:
        return _show_once(ctx, user.id, generated)
    return redirect(url_for("admin.user_edit", user_id=user.id))


def _user_page(user, form=None, errors=None, status=200):
    ctx = web_context()
    return render_template("admin/user_edit.html", user=user, roles=list(Role.select().order_by(Role.code)),
                           held=set(users.role_codes_of(user.id)),
                           sessions=sessions.active_sessions(ctx.settings, user.id),
                           throttled=throttle.status(ctx.settings, user.email),
                           window_minutes=max(1, ctx.settings.login_throttle_window // 60),
                           pair_limit=ctx.settings.login_max_failures_per_account,
                           delay_after=ctx.settings.login_account_delay_after,
                           refusal=access.why_not_act_on(ctx.actor, user),
                           grantable=access.grantable_role_codes(ctx.actor),
                           form=form if form is not None else user.__data__, errors=errors or {}), status


@bp.get("/users/<int:user_id>")
@permission_required("manage_users")
def user_edit(user_id):
    return _user_page(users.get_user(user_id))


@bp.post("/users/<int:user_id>")
@permission_required("manage_users")
@flash_errors("admin.user_edit")
def user_update(user_id):
    try:
        user = users.update_user(web_context(), user_id, request.form.get("email", ""), request.form.get("name", ""))
    except InvalidFields as exc:
        _fields_refused(exc)
        return _user_page(users.get_user(user_id), request.form, exc.fields, exc.status)
    flash(f"Saved {user.email}.", "info")
    return redirect(url_for("admin.user_edit", user_id=user_id))


@bp.post("/users/<int:user_id>/roles")
@permission_required("manage_users")
@flash_errors("admin.user_edit")
def user_roles(user_id):
    codes = users.set_user_roles(web_context(), user_id, request.form.getlist("roles"))
    flash(f"Roles saved: {', '.join(codes) or 'none'}. The change applies to the user's next request.", "info")
    return redirect(url_for("admin.user_edit", user_id=user_id))


@bp.get("/users/<int:user_id>/reset-password")
@permission_required("manage_users")
def user_reset_password_confirm(user_id):
    return _confirmation_page(user_id, "reset the password of", "admin/user_reset_password.html")


@bp.post("/users/<int:user_id>/reset-password")
@permission_required("manage_users")
@flash_errors("admin.user_edit")
def user_reset_password(user_id):
    ctx = web_context()
    temporary_passwords.ready()
    password = users.reset_password(ctx, user_id)
    flash(f"The password of {users.get_user(user_id).email} was reset; their sessions are ended.", "info")
    return _show_once(ctx, user_id, password)


def _show_once(ctx, user_id: int, password: str):
    """Keep ``password`` for one read and send the browser (303: a GET) to the page that reads it."""
    token, key = temporary_passwords.keep(ctx, user_id, password)
    location = url_for("admin.user_temporary_password", user_id=user_id, token=token)
    response = redirect(location, 303)
    # the one-time key reaches this browser only, and only that page: never Redis, a URL or a log
    response.set_cookie(TEMPORARY_PASSWORD_COOKIE, key, max_age=temporary_passwords.SHOW_FOR_SECONDS,
                        path=location, httponly=True, samesite="Strict",
                        secure=ctx.settings.session_cookie_secure)
    return response


@bp.get("/users/<int:user_id>/temporary-password/<token>")
@permission_required("manage_users")
def user_temporary_password(user_id, token):
    ctx = web_context()
    user = users.get_user(user_id)
    password = temporary_passwords.take(ctx, user_id, token, request.cookies.get(TEMPORARY_PASSWORD_COOKIE))
    response = make_response(render_template("admin/temporary_password.html", user=user, password=password,
                                             minutes=temporary_passwords.SHOW_FOR_SECONDS // 60),
                             200 if password else 410)
    if TEMPORARY_PASSWORD_COOKIE in request.cookies:  # the key is of no use once the entry is read
        response.delete_cookie(TEMPORARY_PASSWORD_COOKIE, path=request.path, httponly=True, samesite="Strict",
                               secure=ctx.settings.session_cookie_secure)
    return response


@bp.post("/users/<int:user_id>/disable")
@permission_required("manage_users")
@flash_errors("admin.user_edit")
def user_disable(user_id):
    return _set_disabled(user_id, True, "Disabled {email}; their sessions are ended.")


@bp.post("/users/<int:user_id>/enable")
@permission_required("manage_users")
@flash_errors("admin.user_edit")
def user_enable(user_id):
    return _set_disabled(user_id, False, "Enabled {email}.")


def _set_disabled(user_id: int, disabled: bool, done_text: str):
    user = users.set_disabled(web_context(), user_id, disabled)
    flash(done_text.format(email=user.email), "info")
    return redirect(url_for("admin.user_edit", user_id=user_id))


@bp.post("/users/<int:user_id>/unlock")
@permission_required("manage_users")
@flash_errors("admin.user_edit")
def user_unlock(user_id):
    before = users.unlock_user(web_context(), user_id)
    email = users.get_user(user_id).email
    if before.failures or before.refused_addresses:
        flash(f"Unlocked {email}: its failed sign-ins are forgotten, so no address waits or is refused "
              "for this account.", "info")
    else:
        flash(f"Sign-in to {email} was not throttled; there was nothing to unlock.", "info")
    return redirect(url_for("admin.user_edit", user_id=user_id))


@bp.get("/users/<int:user_id>/delete")
@permission_required("manage_users")
def user_delete_confirm(user_id):
    return _confirmation_page(user_id, "delete", "admin/user_delete.html")


def _confirmation_page(user_id: int, verb: str, template: str):
    """The page asking to confirm ``verb`` on a user; the user page with the reason when the actor
    may not act on that user (the POST is refused by the service anyway)."""
    user = users.get_user(user_id)
    refusal = access.why_not_act_on(web_context().actor, user, verb)
    if refusal:
        flash(refusal, "error")
        return redirect(url_for("admin.user_edit", user_id=user_id))
    return render_template(template, user=user)


@bp.post("/users/<int:user_id>/delete")
@permission_required("manage_users")
@flash_errors("admin.user_edit")
def user_delete(user_id):
    if request.form.get("confirm_email", "").strip().lower() != users.get_user(user_id).email.lower():
        raise HandledError("Type the user's email address to confirm the deletion.")
    email = users.delete_user(web_context(), user_id)
    flash(f"Deleted {email}.", "info")
    return redirect(url_for("admin.users"))


@bp.post("/users/<int:user_id>/sessions/<session_id>/revoke")
@permission_required("manage_users")
@flash_errors("admin.user_edit")
def user_session_revoke(user_id, session_id):
    if users.revoke_user_session(web_context(), user_id, session_id):
        flash("That session is signed out.", "info")
    else:
        flash("That session had already ended.", "info")
    return redirect(url_for("admin.user_edit", user_id=user_id))
