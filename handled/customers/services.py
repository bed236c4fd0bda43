"""Organizations (the 3PL's clients) and facilities (its warehouses): validation and changes.

Every change takes the caller's ``Context`` first (its actor is recorded in the audit trail);
a change that cannot be made raises a ``HandledError`` saying why.
"""

from __future__ import annotations

import re

from peewee import IntegrityError

from handled import audit
from handled.context import Context
from handled.db import primary_db
from handled.customers.places import USPS_STATES, known_timezones, offered_timezones
from handled.errors import Conflict, FieldChecker, HandledError, NotFound
from handled.models import Facility, FacilityOrganization, Organization
from handled.timeutil import utcnow

CODE_PATTERN = re.compile(r"^[A-Z0-9][A-Z0-9_-]{0,31}$")
ZIP_PATTERN = re.compile(r"^[0-9]{5}$")
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _code(value: str) -> str:
    code = (value or "").strip().upper()
    if not CODE_PATTERN.match(code):
        raise HandledError("A code is 1-32 letters, digits, '-' or '_' (stored in capitals), e.g. ACME or WH-EAST.")
    return code


def _required(value: str, label: str) -> str:
    value = (value or "").strip()
    if not value:
        raise HandledError(f"{label} is required.")
    return value


def _optional(value) -> str | None:
    value = (value or "").strip()
    return value or None


def _contact_email(value) -> str | None:
    email = _optional(value)
    if email and not EMAIL_PATTERN.match(email):
        raise HandledError(f"The contact email {email!r} is not an email address; write it as name@example.com.")
    return email


def _zip(value) -> str:
    zip_code = (value or "").strip()
    if not zip_code:
        raise HandledError("ZIP is required: the facility's 5-digit ZIP code, e.g. 07001.")
    if not ZIP_PATTERN.match(zip_code):
        raise HandledError(f"ZIP {zip_code!r} must be exactly 5 digits, e.g. 07001 (keep leading zeros).")
    if zip_code == "00000":
        raise HandledError("ZIP 00000 is not a ZIP code; enter the facility's own.")
    return zip_code


def _state(value) -> str:
    state = (value or "").strip().upper()
    if state and state not in USPS_STATES:
        raise HandledError(f"State {state!r} is not a USPS state or territory code; choose one from the list (e.g. NJ).")
    return state


def _timezone(value, stored: str | None = None) -> str:
    """A zone from the list; an old alias (US/Eastern) only as the value the row already holds."""
    timezone = (value or "").strip()
    if timezone in offered_timezones() or (timezone == stored and timezone in known_timezones()):
        return timezone
    if timezone in known_timezones():
        raise HandledError(f"{timezone!r} is an old alias of a timezone; choose its current name from the list "
                           "(e.g. America/New_York for US/Eastern).")
    raise HandledError(f"{timezone!r} is not a timezone; choose one from the list (e.g. America/New_York)."
                       if timezone else "Timezone is required; choose one from the list.")


def organization_fields(form) -> dict:
    check = FieldChecker()
    fields = {"code": check.value("code", _code, form.get("code")),
              "name": check.value("name", _required, form.get("name"), "Name"),
              "contact_name": _optional(form.get("contact_name")),
              "contact_email": check.value("contact_email", _contact_email, form.get("contact_email")),
              "contact_phone": _optional(form.get("contact_phone"))}
    check.done()
    return fields


def facility_fields(form, stored_timezone: str | None = None) -> dict:
    """The checked fields of a facility form; ``stored_timezone`` is the row's own (kept if unchanged)."""
    check = FieldChecker()
    fields = {"code": check.value("code", _code, form.get("code")),
              "name": check.value("name", _required, form.get("name"), "Name"),
              "address_line1": (form.get("address_line1") or "").strip(),
              "address_line2": _optional(form.get("address_line2")),
              "city": (form.get("city") or "").strip(),
              "state": check.value("state", _state, form.get("state")),
              "zip": check.value("zip", _zip, form.get("zip")),
              "timezone": check.value("timezone", _timezone, form.get("timezone"), stored_timezone)}
    check.done()
    return fields


def list_organizations(include_inactive: bool = True) -> list[Organization]:
    query = Organization.select().order_by(Organization.code)
    return list(query if include_inactive else query.where(Organization.status == "active"))


def list_facilities(organization_id: int | None = None, state: str | None = None,
                    active: bool | None = None) -> list[Facility]:
    """Facilities by code, optionally only those serving one organisation, in one state, or
    active/inactive."""
    query = Facility.select().order_by(Facility.code)
    if organization_id is not None:
        query = query.where(Facility.id.in_(FacilityOrganization.select(FacilityOrganization.facility)
                                            .where(FacilityOrganization.organization == organization_id)))
    if state:
        query = query.where(Facility.state == state.upper())
    if active is not None:
        query = query.where(Facility.active == active)
    return list(query)


def get_organization(org_id: int) -> Organization:
    org = Organization.get_or_none(Organization.id == org_id)
    if org is None:
        raise NotFound(f"Organization {org_id} does not exist.")
    return org


def get_facility(facility_id: int) -> Facility:
    facility = Facility.get_or_none(Facility.id == facility_id)
    if facility is None:
        raise NotFound(f"Facility {facility_id} does not exist.")
    return facility


def _create_or_update(model, get, record_id: int | None, fields: dict):
    """A new row of ``model`` (``record_id`` None) or the updated one; ``get`` raises NotFound when it is gone."""
    if record_id is None:
        return model.create(**fields)
    get(record_id)
    model.update(**fields, updated_at=utcnow()).where(model.id == record_id).execute()
    return get(record_id)


def save_organization(ctx: Context, form, org_id: int | None = None) -> Organization:
    fields = organization_fields(form)
    try:
        with primary_db.atomic():
            org = _create_or_update(Organization, get_organization, org_id, fields)
            audit.record(ctx, "organization.create" if org_id is None else "organization.update",
                         "organization", org.id, org.code)
    except IntegrityError:
        raise Conflict(f"Another organization already uses the code {fields['code']}.") from None
    return org


def set_organization_active(ctx: Context, org_id: int, active: bool) -> Organization:
    return _set_active(ctx, "organization", get_organization, org_id, active,
                       {"status": "active" if active else "inactive"})


def served_organization_ids(facility_id: int) -> set[int]:
    return {fo.organization_id for fo in FacilityOrganization.select().where(FacilityOrganization.facility == facility_id)}


def served_organization_codes() -> dict[int, list[str]]:
    """Facility id -> codes of the organisations it serves, sorted, in one query."""
    served: dict[int, list[str]] = {}
    links = (FacilityOrganization.select(FacilityOrganization.facility, Organization.code)
             .join(Organization).order_by(Organization.code).tuples())
    for facility_id, code in links:
        served.setdefault(facility_id, []).append(code)
    return served


def save_facility(ctx: Context, form, organization_ids, facility_id: int | None = None) -> Facility:
    stored = get_facility(facility_id).timezone if facility_id is not None else None
    fields = facility_fields(form, stored)
    wanted = {int(i) for i in organization_ids if str(i).isdigit()}
    known = {o.id for o in Organization.select(Organization.id).where(Organization.id.in_(list(wanted)))} if wanted else set()
    if wanted - known:
        raise HandledError("One of the chosen organizations no longer exists; reload the page.")
    try:
        with primary_db.atomic():
            facility = _create_or_update(Facility, get_facility, facility_id, fields)
            FacilityOrganization.delete().where(FacilityOrganization.facility == facility.id).execute()
            for org_id in sorted(wanted):
                FacilityOrganization.create(facility=facility.id, organization=org_id)
            audit.record(ctx, "facility.create" if facility_id is None else "facility.update", "facility", facility.id,
                         facility.code, {"organizations": sorted(wanted)})
    except IntegrityError:
        raise Conflict(f"Another facility already uses the code {fields['code']}.") from None
    return facility


def set_facility_active(ctx: Context, facility_id: int, active: bool) -> Facility:
    return _set_active(ctx, "facility", get_facility, facility_id, active, {"active": active})


ACTIVATION_EVENTS = {  # spelled out so every audit event name can be found in the code
    ("organization", True): "organization.activate", ("organization", False): "organization.deactivate",
    ("facility", True): "facility.activate", ("facility", False): "facility.deactivate",
}


def _set_active(ctx: Context, kind: str, get, record_id: int, active: bool, values: dict):
    """Write ``values`` (how the row says active), audit ``<kind>.activate``/``deactivate``; return the row."""
    record = get(record_id)
    model = type(record)
    with primary_db.atomic():
        model.update(**values, updated_at=utcnow()).where(model.id == record_id).execute()
        audit.record(ctx, ACTIVATION_EVENTS[kind, active], kind, record_id, record.code)
    return get(record_id)
