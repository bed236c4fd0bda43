"""Time helpers: handled stores and compares aware UTC timestamps only."""

from datetime import datetime, timezone


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def as_utc(value: datetime | str | None) -> datetime | None:
    """An aware timestamp, or an ISO string ("...Z" or with an offset; naive means UTC), in UTC."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def readable_utc(value: datetime | str | None) -> str:
    """The readable UTC form every page falls back to: "29 Nov 2026 23:41 UTC"."""
    moment = as_utc(value)
    return f"{moment.day} {moment:%b %Y %H:%M} UTC" if moment else ""


def time_element(value: datetime | str | None) -> str:
    """The one way a page shows a moment (the ``when`` template filter): a <time> whose
    datetime is the ISO instant and whose text is the readable UTC form; static/times.js
    then shows it in the reader's local time (the UTC text stays as its tooltip)."""
    moment = as_utc(value)
    if moment is None:
        return ""
    return f'<time datetime="{moment:%Y-%m-%dT%H:%M:%SZ}">{readable_utc(moment)}</time>'
