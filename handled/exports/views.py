"""Exports page and downloads: streamed, with ETag/Last-Modified so unchanged files answer 304."""

from __future__ import annotations

from flask import Blueprint, Response, abort, render_template, request, stream_with_context

from handled.auth.permissions import permission_required
from handled.context import web_context
from handled.exports import service
from handled.exports.registry import UnknownExport, get_export

bp = Blueprint("exports", __name__, url_prefix="/exports")
PERMISSION = "download_exports"


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
        response = Response(stream_with_context(chunks), content_type=export.content_type)
        response.headers["Content-Disposition"] = f'attachment; filename="{export.id}"'
    if version.etag:
        response.set_etag(version.etag)
        response.last_modified = version.last_modified
        response.cache_control.no_cache = True   # revalidate every time: cheap with the ETag
    return response


def _unchanged(version: service.ExportVersion) -> bool:
    if request.if_none_match:
        return request.if_none_match.contains(version.etag)
    since = request.if_modified_since
    return since is not None and version.last_modified.replace(microsecond=0) <= since
