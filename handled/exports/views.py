"""Exports page and downloads: streamed, with ETag/Last-Modified so unchanged files answer 304."""

from __future__ import annotations

import errno
import logging

from flask import Blueprint, Response, abort, render_template, request, stream_with_context

from handled.auth.permissions import permission_required
from handled.context import web_context
from handled.db import connection_lost
from handled.errors import HandledError, first_line
from handled.exports import service
from handled.exports.registry import UnknownExport, get_export
from handled.wording import short_duration

log = logging.getLogger("handled.exports")
bp = Blueprint("exports", __name__, url_prefix="/exports")
PERMISSION = "download_exports"


@bp.app_template_filter("file_size")
def file_size(count: int | None) -> str:
    """Bytes as a person reads them: 812 bytes, 1.6 MB, 1.2 GB."""
    if count is None:
        return ""
    size = float(count)
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{int(size)} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1000
    return ""


@bp.app_template_filter("run_seconds")
def run_seconds(run) -> str:
    """How long a finished run took: 0.4 s, 38 s, 4 min 12 s."""
    if run is None or run.finished_at is None:
        return ""
    return short_duration((run.finished_at - run.started_at).total_seconds())


@bp.get("/")
@permission_required(PERMISSION)
def overview():
    return render_template("exports/overview.html", rows=service.describe_exports())


@bp.get("/<export_id>")
@permission_required(PERMISSION)
def download(export_id):
    try:
        export = get_export(export_id)
    except UnknownExport:
        abort(404)
    version = service.export_version(export)
    if version.etag and _unchanged(version):
        response = Response(status=304)
    else:
        chunks = service.stream_export(web_context(), export.id, version=version)
        # the first chunk is made here, inside the view: DATA not answering as the stream
        # starts is then the error handlers' 503 page, not a bare 500 from gunicorn
        first = next(chunks, b"")
        response = Response(stream_with_context(_then(first, chunks, export.id)), content_type=export.content_type)
        response.headers["Content-Disposition"] = f'attachment; filename="{export.id}"'
    if version.etag:
        response.set_etag(version.etag)
        response.last_modified = version.last_modified
        response.cache_control.no_cache = True   # revalidate every time: cheap with the ETag
    return response


class StreamCut(ConnectionResetError):
    """A download that cannot go on after its response started: the connection is cut.

    No status can say it any more, and a stream that just ended would look like a whole
    (short) file; a cut connection is an incomplete download to every client. gunicorn
    closes a connection reset without a traceback: the log line is ``_then``'s.
    """

    def __init__(self, export_id: str):
        super().__init__(errno.ECONNRESET, f"download of {export_id} cut")


def _then(first: bytes, chunks, export_id: str):
    """``first``, then the rest of ``chunks`` (closed with the response: the slot and the run end)."""
    try:
        if first:
            yield first
        yield from chunks
    except Exception as exc:
        if not isinstance(exc, HandledError) and not connection_lost(exc):
            raise   # a bug outside the service (which words its own): gunicorn logs the traceback
        log.warning("download of %s cut after it started: %s", export_id, first_line(exc))
        raise StreamCut(export_id) from None
    finally:
        chunks.close()


def _unchanged(version: service.ExportVersion) -> bool:
    if request.if_none_match:
        return request.if_none_match.contains(version.etag)
    since = request.if_modified_since
    return since is not None and version.last_modified.replace(microsecond=0) <= since
