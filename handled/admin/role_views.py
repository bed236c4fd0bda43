"""Roles: list, create, edit the permission matrix, delete (not system roles).

The pages offer only what the actor may do (permissions they hold, roles they may
change); ``handled.auth.roles`` decides and audits every refusal."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for

from handled.admin import bp
from handled.auth import roles
from handled.auth.permissions import permission_required
from handled.context import web_context
from handled.errors import HandledError, NotFound


@bp.get("/roles", endpoint="roles")
@permission_required("manage_roles")
def roles_list():
    actor = web_context().actor
    rows = roles.list_roles()
    deletable = {row["role"].id for row in rows if roles.may_delete(actor, row["role"], set(row["permissions"]))}
    return render_template("admin/roles.html", rows=rows, permissions=roles.all_permissions(), deletable=deletable)


@bp.route("/roles/new", methods=["GET", "POST"])
@permission_required("manage_roles")
def role_new():
    permissions = roles.all_permissions()
    if request.method == "GET":
        return _form(None, permissions, set(), {})
    form = request.form
    try:
        role = roles.create_role(web_context(), form.get("code", ""), form.get("name", ""),
                                 form.get("description", ""), form.getlist("permissions"))
    except HandledError as exc:
        return _refused_form(exc, None, permissions)
    flash(f"Created role {role.code}.", "info")
    return redirect(url_for("admin.roles"))


@bp.route("/roles/<int:role_id>", methods=["GET", "POST"])
@permission_required("manage_roles")
def role_edit(role_id):
    try:
        role = roles.get_role(role_id)
    except NotFound as exc:
        flash(str(exc), "error")
        return redirect(url_for("admin.roles"))
    permissions = roles.all_permissions()
    if request.method == "GET":
        held = roles.role_permission_codes(role_id)
        return _form(role, permissions, held, role.__data__,
                     refusal=roles.why_not_change(web_context().actor, role, held, held, "change"))
    form = request.form
    try:
        roles.update_role(web_context(), role_id, form.get("name", ""), form.get("description", ""),
                          form.getlist("permissions"))
    except HandledError as exc:
        return _refused_form(exc, role, permissions)
    flash(f"Saved role {role.code}; holders get the new permissions on their next request.", "info")
    return redirect(url_for("admin.roles"))


@bp.post("/roles/<int:role_id>/delete")
@permission_required("manage_roles")
def role_delete(role_id):
    try:
        code = roles.delete_role(web_context(), role_id)
    except HandledError as exc:
        flash(str(exc), "error")
    else:
        flash(f"Deleted role {code}.", "info")
    return redirect(url_for("admin.roles"))


def _form(role, permissions, held, form, refusal=None):
    """The role form; boxes of permissions the actor does not hold cannot be ticked."""
    actor = web_context().actor
    grantable = {p.code for p in permissions if actor.can(p.code)}
    return render_template("admin/role_form.html", role=role, permissions=permissions, held=held, form=form,
                           grantable=grantable, refusal=refusal)


def _refused_form(exc: HandledError, role, permissions):
    """The role form again with what was posted and why it was refused (the error's status)."""
    flash(str(exc), "error")
    return _form(role, permissions, set(request.form.getlist("permissions")), request.form), exc.status
