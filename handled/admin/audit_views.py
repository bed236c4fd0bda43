"""The audit log, filtered by actor, action and date."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from flask import flash, render_template, request, url_for
from flask_login import current_user

from handled.admin import bp
from handled.auth.permissions import permission_required
from handled.db import contains_pattern
from handled.models import AuditLog

PER_PAGE = 50


def _day(value: str, label: str) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=timezone.utc)
    except ValueError:
        flash(f"{label} must be a date like 2026-01-31; the filter was ignored.", "error")
        return None


def audit_query(actor: str, action: str, since: datetime | None, until: datetime | None):
    """Rows matching the filters, newest first: ``actor`` anywhere in the actor's email (literally),
    ``action`` exactly, or every action of a family with ``family.*`` (``auth.*``)."""
    query = AuditLog.select()
    if actor:
        query = query.where(AuditLog.actor_email.ilike(contains_pattern(actor)))
    if action.endswith(".*"):
        query = query.where(AuditLog.action.startswith(action[:-1]))
    elif action:
        query = query.where(AuditLog.action == action)
    if since:
        query = query.where(AuditLog.occurred_at >= since)
    if until:
        query = query.where(AuditLog.occurred_at < until + timedelta(days=1))
    return query.order_by(AuditLog.occurred_at.desc(), AuditLog.id.desc())


# Where an audited target can be looked at, and the permission that page needs.
TARGET_PAGES = {
    "user": ("admin.user_edit", "user_id", "manage_users"),
    "role": ("admin.role_edit", "role_id", "manage_roles"),
    "organization": ("customers.organization_edit", "org_id", "manage_customers"),
    "facility": ("customers.facility_edit", "facility_id", "manage_customers"),
    "integration": ("integrations.integration_page", "integration_id", "run_imports"),
}


def target_url(row: AuditLog) -> str | None:
    """A link to the audited thing when the viewer may open its page (the page says if it is gone)."""
    page = TARGET_PAGES.get(row.target_type or "")
    if page is None or not row.target_id:
        return None
    endpoint, argument, permission = page
    if not current_user.has_permission(permission):
        return None
    value = row.target_id
    if argument != "integration_id":
        if not value.isdigit():
            return None
        value = int(value)
    return url_for(endpoint, **{argument: value})


@bp.get("/audit", endpoint="audit_log")
@permission_required("view_audit")
def audit_log():
    args = request.args
    actor, action = args.get("actor", "").strip(), args.get("action", "").strip()
    since, until = _day(args.get("since", ""), "From"), _day(args.get("until", ""), "To")
    try:
        page = max(int(args.get("page", 1)), 1)
    except ValueError:
        page = 1
    query = audit_query(actor, action, since, until)
    total = query.count()
    pages = max((total + PER_PAGE - 1) // PER_PAGE, 1)
    page = min(page, pages)          # past the end: the last page
    actions = [a for (a,) in AuditLog.select(AuditLog.action).distinct().order_by(AuditLog.action).tuples()]
    families = sorted({a.split(".", 1)[0] + ".*" for a in actions if "." in a})
    return render_template("admin/audit.html", rows=list(query.paginate(page, PER_PAGE)), total=total, page=page,
                           pages=pages, actions=actions, families=families, target_url=target_url,
                           filters={"actor": actor, "action": action, "since": args.get("since", ""),
                                    "until": args.get("until", "")})
