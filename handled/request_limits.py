"""Request bodies: small for every route, MAX_UPLOAD_MB for the routes that take files.

Every route reads at most ``FORM_BODY_BYTES`` (64 KiB: sign-in, admin forms,
JSON); a view marked ``@accepts_uploads`` reads at most MAX_UPLOAD_MB. The limit
is werkzeug's ``max_content_length``, which this app's request class answers
from the matched route, so it is in force before anything reads the body (the
CSRF check reads the form before any view runs):

- a body announced larger (Content-Length) is refused before a byte is read;
- a body without Content-Length (chunked) is read through a stream that stops
  with 413 as soon as it passes the limit (gunicorn and werkzeug's server mark
  such streams as terminated, so werkzeug reads them, and only this far).
  werkzeug 3.1's own stream raises only when read in pieces (multipart); read
  whole (a url-encoded form, JSON) it stops at the limit and returns the body
  cut short without a word, so ``StrictMaxStream`` checks for one byte more.

The 413 page says which limit (error_pages.py).
"""

from __future__ import annotations

from flask import Request, current_app, request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.utils import cached_property
from werkzeug.wsgi import LimitedStream, get_input_stream

FORM_BODY_BYTES = 64 * 1024
UPLOAD_MARK = "handled_accepts_uploads"


def accepts_uploads(view):
    """Mark a view that takes uploaded files: its body may reach MAX_UPLOAD_MB."""
    setattr(view, UPLOAD_MARK, True)
    return view


def upload_limit_bytes(settings) -> int:
    return settings.max_upload_mb * 1024 * 1024


def takes_uploads(req: Request) -> bool:
    view = current_app.view_functions.get(req.endpoint) if req.endpoint else None
    return bool(getattr(view, UPLOAD_MARK, False))


class StrictMaxStream(LimitedStream):
    """werkzeug's maximum-length stream, refusing (413) a body longer than the limit even when it
    is read whole, instead of returning its first ``limit`` bytes as if they were all of it."""

    def __init__(self, stream, limit: int):
        super().__init__(stream, limit, is_max=True)

    def readall(self) -> bytes:
        data = super().readall()
        if self.is_exhausted and self._stream.read(1):
            raise RequestEntityTooLarge()
        return data


class LimitedRequest(Request):
    """Flask's request with the body limit of the matched route."""

    @cached_property
    def stream(self):
        if self.shallow:
            raise RuntimeError("This request was created with 'shallow=True'; its body cannot be read.")
        limit = self.max_content_length
        if limit is not None and "wsgi.input_terminated" in self.environ:
            if self.content_length is not None and self.content_length > limit:
                raise RequestEntityTooLarge()
            return StrictMaxStream(self.environ["wsgi.input"], limit)
        return get_input_stream(self.environ, max_content_length=limit)

    @property
    def max_content_length(self) -> int | None:
        if self._max_content_length is not None:
            return self._max_content_length
        if not current_app:
            return FORM_BODY_BYTES
        if takes_uploads(self):
            return upload_limit_bytes(current_app.config["HANDLED_SETTINGS"])
        return current_app.config["MAX_CONTENT_LENGTH"]

    @max_content_length.setter
    def max_content_length(self, value: int | None) -> None:
        self._max_content_length = value


def too_large_message() -> str:
    """The 413 page's sentence: which limit this route has."""
    if takes_uploads(request):
        mb = current_app.config["HANDLED_SETTINGS"].max_upload_mb
        return (f"The upload is larger than {mb} MB, the most this page accepts (MAX_UPLOAD_MB). Upload the "
                "files in smaller batches, or import a large file on the server with flask integrations import.")
    return (f"The request is larger than {FORM_BODY_BYTES // 1024} KiB, the most a page of handled accepts "
            "(only the upload page takes more); nothing of it was used.")


def init_app(app) -> None:
    """Every route's limit: the request class, and the small limit as the default."""
    app.request_class = LimitedRequest
    app.config["MAX_CONTENT_LENGTH"] = FORM_BODY_BYTES
