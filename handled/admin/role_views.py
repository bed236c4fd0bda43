"""Roles: list, create, edit the permission matrix, delete (not system roles).

The pages offer only what the actor may do (permissions they hold, roles they may
change); ``handled.auth.roles`` decides and audits every refusal. A deletion is
confirmed on a page that says how many users hold the role (and who); an unknown
role id is a 404 page with a sentence."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for

from handled.admin import bp
from handled.auth import roles
from handled.auth.permissions import permission_required
from handled.context import web_context
from handled.errors import HandledError, InvalidFields


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
    role = roles.get_role(role_id)
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


HOLDERS_SHOWN = 10


@bp.get("/roles/<int:role_id>/delete")
@permission_required("manage_roles")
def role_delete_confirm(role_id):
    role = roles.get_role(role_id)
    refusal = roles.why_not_delete(web_context().actor, role)
    if refusal:
        flash(refusal, "error")
        return redirect(url_for("admin.roles"))
    count, shown = roles.role_holders(role_id, HOLDERS_SHOWN)
    return render_template("admin/role_delete.html", role=role, holder_count=count, holders=shown)


@bp.post("/roles/<int:role_id>/delete")
@permission_required("manage_roles")
def role_delete(role_id):
    """Delete the role; when the form says how many holders the actor was shown (``holders``) and
    that number changed since, nothing is deleted and the confirmation page is shown again."""
    seen = request.form.get("holders", "")
    try:
        if seen:
            count = roles.role_holders(role_id, 0)[0]
            if seen != str(count):
                flash(f"The number of users holding the role changed since you looked (now {count}); "
                      "check the list below and confirm again.", "error")
                return redirect(url_for("admin.role_delete_confirm", role_id=role_id))
        code = roles.delete_role(web_context(), role_id)
    except HandledError as exc:
        flash(str(exc), "error")
    else:
        flash(f"Deleted role {code}.", "info")
    return redirect(url_for("admin.roles"))


def _form(role, permissions, held, form, refusal=None, errors=None):
    """The role form; boxes of permissions the actor does not hold cannot be ticked."""
    actor = web_context().actor
    grantable = {p.code for p in permissions if actor.can(p.code)}
    return render_template("admin/role_form.html", role=role, permissions=permissions, held=held, form=form,
                           grantable=grantable, refusal=refusal, errors=errors or {})


def _refused_form(exc: HandledError, role, permissions):
    """The role form again with what was posted and why it was refused (the error's status); refused
    fields each with their sentence next to them."""
    fields = exc.fields if isinstance(exc, InvalidFields) else {}
    flash("Some fields need correcting; see the notes next to them." if len(fields) > 1 else str(exc), "error")
    return _form(role, permissions, set(request.form.getlist("permissions")), request.form, errors=fields), exc.status
