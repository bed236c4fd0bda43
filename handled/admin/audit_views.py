"""The audit log, filtered by actor, action and date."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from flask import flash, render_template, request

from handled.admin import bp
from handled.auth.permissions import permission_required
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
    query = AuditLog.select()
    if actor:
        query = query.where(AuditLog.actor_email.ilike(f"%{actor}%"))
    if action:
        query = query.where(AuditLog.action.startswith(action))
    if since:
        query = query.where(AuditLog.occurred_at >= since)
    if until:
        query = query.where(AuditLog.occurred_at < until + timedelta(days=1))
    return query.order_by(AuditLog.occurred_at.desc(), AuditLog.id.desc())


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
    actions = [a for (a,) in AuditLog.select(AuditLog.action).distinct().order_by(AuditLog.action).tuples()]
    return render_template("admin/audit.html", rows=list(query.paginate(page, PER_PAGE)), total=total, page=page,
                           pages=max((total + PER_PAGE - 1) // PER_PAGE, 1), actions=actions,
                           filters={"actor": actor, "action": action, "since": args.get("since", ""),
                                    "until": args.get("until", "")})
