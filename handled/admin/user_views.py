"""Users: list, create, edit, roles, reset password, disable/enable, delete, sessions.

The user page offers no change of an account holding permissions the actor lacks;
``handled.auth.users`` decides (and audits the refusal) whatever the page offered."""

from __future__ import annotations

import functools

from flask import flash, redirect, render_template, request, url_for

from handled.admin import bp
from handled.auth import access, sessions, users
from handled.auth.permissions import permission_required
from handled.context import web_context
from handled.errors import HandledError, NotFound
from handled.models import Role

PER_PAGE = 25


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
    try:
        return max(int(request.args.get("page", 1)), 1)
    except ValueError:
        return 1


@bp.get("/users", endpoint="users")
@permission_required("manage_users")
def users_list():
    search = request.args.get("q", "").strip()
    page = _page_number()
    found, total = users.list_users(search, page, PER_PAGE)
    return render_template("admin/users.html", users=found, total=total, page=page, search=search,
                           pages=max((total + PER_PAGE - 1) // PER_PAGE, 1),
                           roles_of={u.id: users.role_codes_of(u.id) for u in found})


@bp.route("/users/new", methods=["GET", "POST"])
@permission_required("manage_users")
def user_new():
    all_roles = list(Role.select().order_by(Role.code))
    grantable = access.grantable_role_codes(web_context().actor)
    if request.method == "GET":
        return render_template("admin/user_new.html", roles=all_roles, grantable=grantable, form={})
    form = request.form
    try:
        user, generated = users.create_user(web_context(), form.get("email", ""), form.get("name", ""),
                                            form.getlist("roles"), password=form.get("password") or None)
    except HandledError as error:
        flash(str(error), "error")
        return render_template("admin/user_new.html", roles=all_roles, grantable=grantable, form=form), error.status
    if generated:
        return render_template("admin/temporary_password.html", user=user, password=generated)
    flash(f"Created {user.email}.", "info")
    return redirect(url_for("admin.user_edit", user_id=user.id))


@bp.get("/users/<int:user_id>")
@permission_required("manage_users")
@flash_errors("admin.users")
def user_edit(user_id):
    user = users.get_user(user_id)
    ctx = web_context()
    return render_template("admin/user_edit.html", user=user, roles=list(Role.select().order_by(Role.code)),
                           held=set(users.role_codes_of(user_id)),
                           sessions=sessions.active_sessions(ctx.settings, user_id),
                           refusal=access.why_not_act_on(ctx.actor, user),
                           grantable=access.grantable_role_codes(ctx.actor))


@bp.post("/users/<int:user_id>")
@permission_required("manage_users")
@flash_errors("admin.user_edit")
def user_update(user_id):
    user = users.update_user(web_context(), user_id, request.form.get("email", ""), request.form.get("name", ""))
    flash(f"Saved {user.email}.", "info")
    return redirect(url_for("admin.user_edit", user_id=user_id))


@bp.post("/users/<int:user_id>/roles")
@permission_required("manage_users")
@flash_errors("admin.user_edit")
def user_roles(user_id):
    codes = users.set_user_roles(web_context(), user_id, request.form.getlist("roles"))
    flash(f"Roles saved: {', '.join(codes) or 'none'}. The change applies to the user's next request.", "info")
    return redirect(url_for("admin.user_edit", user_id=user_id))


@bp.post("/users/<int:user_id>/reset-password")
@permission_required("manage_users")
@flash_errors("admin.user_edit")
def user_reset_password(user_id):
    password = users.reset_password(web_context(), user_id)
    return render_template("admin/temporary_password.html", user=users.get_user(user_id), password=password)


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


@bp.get("/users/<int:user_id>/delete")
@permission_required("manage_users")
@flash_errors("admin.users")
def user_delete_confirm(user_id):
    user = users.get_user(user_id)
    refusal = access.why_not_act_on(web_context().actor, user, "delete")
    if refusal:
        flash(refusal, "error")
        return redirect(url_for("admin.user_edit", user_id=user_id))
    return render_template("admin/user_delete.html", user=user)


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
