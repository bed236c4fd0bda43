"""Organizations and facilities: list, create, edit, deactivate/activate."""

from __future__ import annotations

from typing import Callable

from flask import flash, redirect, render_template, request, url_for

from handled.auth.permissions import permission_required
from handled.context import web_context
from handled.customers import bp, services
from handled.customers.places import US_TIMEZONES, USPS_STATES, other_timezones
from handled.errors import HandledError, InvalidFields


@bp.get("/organizations", endpoint="organizations")
@permission_required("view_customers")
def organizations_list():
    return render_template("customers/organizations.html", organizations=services.list_organizations())


@bp.route("/organizations/new", methods=["GET", "POST"], endpoint="organization_new")
@bp.route("/organizations/<int:org_id>", methods=["GET", "POST"], endpoint="organization_edit")
@permission_required("manage_customers")
def organization_form(org_id=None):
    def page(org, posted, errors):
        return render_template("customers/organization_form.html", org=org, errors=errors,
                               form=posted if posted is not None else org.__data__ if org else {})

    return _form_page(org_id, load=services.get_organization, page=page, list_endpoint="customers.organizations",
                      save=lambda: services.save_organization(web_context(), request.form, org_id),
                      saved_text=lambda org: f"Saved organization {org.code}.")


@bp.post("/organizations/<int:org_id>/active")
@permission_required("manage_customers")
def organization_active(org_id):
    return _set_active(services.set_organization_active, org_id, "customers.organizations",
                       lambda org: f"{org.code} is now {org.status}.")


@bp.get("/facilities", endpoint="facilities")
@permission_required("view_customers")
def facilities_list():
    organization = request.args.get("organization", "")
    state = request.args.get("state", "").strip().upper()
    status = request.args.get("status", "")
    facilities = services.list_facilities(
        organization_id=int(organization) if organization.isdigit() else None,
        state=state if state in USPS_STATES else None,
        active={"active": True, "inactive": False}.get(status))
    return render_template("customers/facilities.html", facilities=facilities,
                           served=services.served_organization_codes(),
                           organizations=services.list_organizations(), states=USPS_STATES,
                           chosen={"organization": organization, "state": state, "status": status})


@bp.route("/facilities/new", methods=["GET", "POST"], endpoint="facility_new")
@bp.route("/facilities/<int:facility_id>", methods=["GET", "POST"], endpoint="facility_edit")
@permission_required("manage_customers")
def facility_form(facility_id=None):
    def page(facility, posted, errors):
        if posted is None:
            served = services.served_organization_ids(facility_id) if facility else set()
            form = facility.__data__ if facility else {"timezone": "America/New_York"}
        else:   # the organisations ticked in the form that was refused
            served, form = {int(i) for i in posted.getlist("organizations") if i.isdigit()}, posted
        return render_template("customers/facility_form.html", facility=facility, errors=errors,
                               organizations=services.list_organizations(), served=served, form=form,
                               states=USPS_STATES, us_timezones=US_TIMEZONES, other_timezones=other_timezones())

    return _form_page(facility_id, load=services.get_facility, page=page, list_endpoint="customers.facilities",
                      save=lambda: services.save_facility(web_context(), request.form,
                                                          request.form.getlist("organizations"), facility_id),
                      saved_text=lambda facility: f"Saved facility {facility.code}.")


@bp.post("/facilities/<int:facility_id>/active")
@permission_required("manage_customers")
def facility_active(facility_id):
    return _set_active(services.set_facility_active, facility_id, "customers.facilities",
                       lambda f: f"{f.code} is now {'active' if f.active else 'inactive'}.")


def _form_page(record_id, *, load: Callable, page: Callable, list_endpoint: str, save: Callable,
               saved_text: Callable):
    """The create (``record_id`` None) or edit page of a record, for organizations and facilities alike.

    GET shows ``page(record, None, {})``; POST saves and goes back to the list, or shows
    ``page(record, request.form, errors)`` again (400) with every refused field's sentence
    next to it, or the reason in a flash. A record that is gone sends the user back to the
    list with the reason.
    """
    try:
        record = load(record_id) if record_id else None
    except HandledError as exc:
        flash(str(exc), "error")
        return redirect(url_for(list_endpoint))
    if request.method == "GET":
        return page(record, None, {})
    try:
        saved = save()
    except InvalidFields as exc:
        flash("Some fields need correcting; see the notes next to them." if len(exc.fields) > 1 else str(exc), "error")
        return page(record, request.form, exc.fields), 400
    except HandledError as exc:
        flash(str(exc), "error")
        return page(record, request.form, {}), 400
    flash(saved_text(saved), "info")
    return redirect(url_for(list_endpoint))


def _set_active(set_active: Callable, record_id: int, list_endpoint: str, done_text: Callable):
    """Activate or deactivate (the form's ``active``), say what it is now, back to the list."""
    try:
        record = set_active(web_context(), record_id, request.form.get("active") == "true")
        flash(done_text(record), "info")
    except HandledError as exc:
        flash(str(exc), "error")
    return redirect(url_for(list_endpoint))
