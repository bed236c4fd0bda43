"""HandledError: the base of every error meant for a person.

A service that cannot do what it was asked raises a ``HandledError`` (or a
subclass) whose message is one sentence the user can act on. The edges turn it
into what the user sees, each in exactly one place:

- the CLI (``handled.cli_support.HandledGroup``, the group class of every ``flask``
  command group): the sentence (and hint) on stderr, exit code ``error.exit_code``;
- the web (``handled.error_pages``): a flash message or an error page with
  ``error.status``;
- a background job (``handled.jobs.worker``): the run and the job fail with
  ``str(error)``.

Any other exception is a bug: it is logged with its traceback, and the user sees
a generic sentence (a 500 page, exit code 1, "failed unexpectedly").

This module imports nothing from Flask or click, so every service may use it.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit, urlunsplit


class HandledError(Exception):
    """Something a person asked for cannot be done; ``str()`` says why in one sentence."""

    status: int = 400       # HTTP status of the error page
    exit_code: int = 1      # exit code of the CLI command

    def __init__(self, message: str = "", *, hint: str | None = None, status: int | None = None,
                 exit_code: int | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        if status is not None:
            self.status = status
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message

    def full_text(self) -> str:
        """The sentence followed by the hint, for a terminal or an error page."""
        return f"{self.message} {self.hint}" if self.hint else self.message


class NotFound(HandledError):
    """The thing named does not exist (any more)."""

    status = 404


class Forbidden(HandledError):
    """The actor may not do this."""

    status = 403


class Conflict(HandledError):
    """The request clashes with the current state (already running, already exists)."""

    status = 409


class Unavailable(HandledError):
    """A component the request needs (a database, Redis) is not answering."""

    status = 503


class InvalidFields(HandledError):
    """A form with one or more fields a person must correct: ``fields`` maps each field's name
    to its sentence (shown next to the field, all at once); ``str()`` sums them up for a flash
    message or a terminal."""

    def __init__(self, fields: dict[str, str]):
        self.fields = dict(fields)
        count = len(self.fields)
        summary = " ".join(self.fields.values()) if count == 1 else \
            f"{count} fields need correcting: " + " ".join(self.fields.values())
        super().__init__(summary)


class FieldChecker:
    """Collects the sentence for each bad field of a form, so every problem is reported at once:
    ``check.value("zip", parse_zip, raw)`` returns the parsed value (None when it was refused);
    ``check.done()`` raises ``InvalidFields`` when any field was refused."""

    def __init__(self) -> None:
        self.errors: dict[str, str] = {}

    def value(self, field: str, parse, *args):
        try:
            return parse(*args)
        except HandledError as exc:
            self.errors.setdefault(field, str(exc))
            return None

    def done(self) -> None:
        if self.errors:
            raise InvalidFields(self.errors)


def first_line(exc: BaseException) -> str:
    """The first line of ``str(exc)``, or the exception's type name when it has no text.

    Driver errors (psycopg2, redis) carry several lines of detail; a sentence for a
    person or a log line quotes only the first.
    """
    text = redact_url(str(exc).strip())
    return text.splitlines()[0] if text else type(exc).__name__


_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://\S+")


def redact_url(text: str) -> str:
    """``text`` (one URL, or a message quoting some) with every URL's password replaced by ***
    (postgresql://user:***@host/db, redis://***@host/0, ?password=***): the one way to show a URL
    (or a driver's or tool's message holding one) to a person or a log."""
    return _URL.sub(lambda match: _redact_one(match.group(0)), text)


def _redact_one(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:   # not parseable: hide everything between :// and the last @
        scheme, _, rest = url.partition("://")
        return f"{scheme}://***@{rest.rpartition('@')[2]}" if "@" in rest else url
    netloc, query = parts.netloc, parts.query
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        if ":" in userinfo:
            netloc = f"{userinfo.split(':', 1)[0]}:***@{host}"
        elif parts.scheme.startswith("redis"):   # redis://secret@host: a lone token may be the password
            netloc = f"***@{host}"
    elif "@" in parts.path:   # a password holding "/" ends the host early: postgresql://u:pa/ss@host/db
        head, _, host = url.partition("://")[2].rpartition("@")
        return f"{parts.scheme}://{head.split(':', 1)[0]}:***@{host}"
    if query:
        query = "&".join(f"{k}=***" if k.lower() in ("password", "pass") else f"{k}={v}"
                         for k, v in parse_qsl(query, keep_blank_values=True))
    shown = urlunsplit(parts._replace(netloc=netloc, query=query))
    if not netloc and url.startswith(f"{parts.scheme}://"):  # unix:///path keeps its slashes
        shown = f"{parts.scheme}://{shown[len(parts.scheme) + 1:]}"
    return shown
