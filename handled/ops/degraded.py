"""Running with a part missing: which database is down, the DATA banner, the 503 text.

DATA down (split mode): PRIMARY still serves sign-in, users, roles and customers, so
pages keep working and every page shows a banner saying DATA work is paused. The
check is one ``SELECT 1`` on DATA, remembered per process for a few seconds, so it
costs nothing per request. PRIMARY down: nothing can be authorised, every request
gets the 503 page (handled.errors) naming PRIMARY.
"""

from __future__ import annotations

import logging
import threading
import time

from flask import current_app, g

from handled.context import app_settings
from handled.db import data_db, primary_db, probe

log = logging.getLogger("handled.ops")

STATUS_TTL = 10.0  # seconds a DATA probe result is reused by this process ...
DOWN_TTL = 30.0  # ... and while DATA is down (a hanging server costs connect_timeout per probe)
DATA_BLUEPRINTS = {"integrations", "transformations", "exports", "coverage", "jobs"}

_lock = threading.Lock()
_data_status: dict = {"checked_at": -1e9, "ok": True, "reason": None}

DATA_BANNER = ("The DATA database is not answering: imports, transformations, exports and coverage are "
               "paused until it is back. Sign-in, users, roles and customers keep working.")


def data_reason(max_age: float = STATUS_TTL) -> str | None:
    """Why DATA is unavailable (None when it answers, or in single mode)."""
    settings = app_settings()
    if not settings.split_db_mode:
        return None  # one database: if it is down, PRIMARY's 503 page says so
    with _lock:
        age = time.monotonic() - _data_status["checked_at"]
        if age < (DOWN_TTL if _data_status["reason"] else max_age):
            return _data_status["reason"]
    reason = probe(data_db)
    with _lock:
        _data_status.update(checked_at=time.monotonic(), reason=reason)
    if reason:
        log.warning("DATA unavailable: %s", reason)
    return reason


def forget_data_status() -> None:
    """Probe DATA afresh on the next request (tests; after a restore)."""
    with _lock:
        _data_status["checked_at"] = -1e9


def outage_text(exc: Exception) -> tuple[str, str]:
    """Title and message of the 503 page for a database error raised by a request."""
    settings = app_settings()
    _stop_sign_in_retry()
    primary_reason = probe(primary_db)
    if primary_reason is None and settings.split_db_mode:
        forget_data_status()
        if data_reason() is not None:
            return "DATA database unavailable", DATA_BANNER
    if primary_reason is not None:
        log.error("PRIMARY unavailable: %s", primary_reason)
    return ("Database unavailable",
            "The PRIMARY database (accounts and customers) is not answering right now, so handled cannot "
            "check who you are. Try again in a minute; if it persists, see 'PRIMARY down' in docs/OPS_RUNBOOK.md.")


def _stop_sign_in_retry() -> None:
    """If reading the session is what failed, the error page must not try again:
    its header asks who is signed in, which would raise inside the error handler."""
    if "_login_user" not in g:
        g._login_user = current_app.login_manager.anonymous_user()


def banner_context() -> dict:
    """Template context: ``data_banner`` is the DATA-down sentence, or None."""
    try:
        reason = data_reason()
    except Exception:  # a banner must never break a page
        reason = None
    return {"data_banner": DATA_BANNER if reason else None}


def init_app(app) -> None:
    app.context_processor(banner_context)
