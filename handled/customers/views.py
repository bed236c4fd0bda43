"""Organizations and facilities: list, create, edit, deactivate/activate."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for

from handled.auth.permissions import permission_required
from handled.context import web_context
from handled.customers import bp, services
from handled.errors import HandledError


@bp.get("/organizations", endpoint="organizations")
@permission_required("view_customers")
def organizations_list():
    return render_template("customers/organizations.html", organizations=services.list_organizations())


@bp.route("/organizations/new", methods=["GET", "POST"])
@permission_required("manage_customers")
def organization_new():
    return _organization_form(None)


@bp.route("/organizations/<int:org_id>", methods=["GET", "POST"])
@permission_required("manage_customers")
def organization_edit(org_id):
    return _organization_form(org_id)


def _organization_form(org_id):
    try:
        org = services.get_organization(org_id) if org_id else None
    except HandledError as exc:
        flash(str(exc), "error")
        return redirect(url_for("customers.organizations"))
    if request.method == "GET":
        return render_template("customers/organization_form.html", org=org, form=org.__data__ if org else {})
    try:
        saved = services.save_organization(web_context(), request.form, org_id)
    except HandledError as exc:
        flash(str(exc), "error")
        return render_template("customers/organization_form.html", org=org, form=request.form), 400
    flash(f"Saved organization {saved.code}.", "info")
    return redirect(url_for("customers.organizations"))


@bp.post("/organizations/<int:org_id>/active")
@permission_required("manage_customers")
def organization_active(org_id):
    active = request.form.get("active") == "true"
    try:
        org = services.set_organization_active(web_context(), org_id, active)
        flash(f"{org.code} is now {org.status}.", "info")
    except HandledError as exc:
        flash(str(exc), "error")
    return redirect(url_for("customers.organizations"))


@bp.get("/facilities", endpoint="facilities")
@permission_required("view_customers")
def facilities_list():
    return render_template("customers/facilities.html", facilities=services.list_facilities(),
                           served=services.served_organization_codes())


@bp.route("/facilities/new", methods=["GET", "POST"])
@permission_required("manage_customers")
def facility_new():
    return _facility_form(None)


@bp.route("/facilities/<int:facility_id>", methods=["GET", "POST"])
@permission_required("manage_customers")
def facility_edit(facility_id):
    return _facility_form(facility_id)


def _facility_form(facility_id):
    try:
        facility = services.get_facility(facility_id) if facility_id else None
    except HandledError as exc:
        flash(str(exc), "error")
        return redirect(url_for("customers.facilities"))
    organizations = services.list_organizations()
    if request.method == "GET":
        served = services.served_organization_ids(facility_id) if facility else set()
        return render_template("customers/facility_form.html", facility=facility, organizations=organizations,
                               served=served, form=facility.__data__ if facility else {"timezone": "America/New_York"})
    chosen = request.form.getlist("organizations")
    try:
        saved = services.save_facility(web_context(), request.form, chosen, facility_id)
    except HandledError as exc:
        flash(str(exc), "error")
        return render_template("customers/facility_form.html", facility=facility, organizations=organizations,
                               served={int(i) for i in chosen if i.isdigit()}, form=request.form), 400
    flash(f"Saved facility {saved.code}.", "info")
    return redirect(url_for("customers.facilities"))


@bp.post("/facilities/<int:facility_id>/active")
@permission_required("manage_customers")
def facility_active(facility_id):
    active = request.form.get("active") == "true"
    try:
        facility = services.set_facility_active(web_context(), facility_id, active)
        flash(f"{facility.code} is now {'active' if facility.active else 'inactive'}.", "info")
    except HandledError as exc:
        flash(str(exc), "error")
    return redirect(url_for("customers.facilities"))
