"""``flask exports list|write``."""

from __future__ import annotations

import sys
from datetime import timezone

import click
from flask.cli import AppGroup

from handled.exports import service
from handled.exports.registry import UnknownExport

exports_cli = AppGroup("exports", help="JSON and CSV files from the reference tables.")


@exports_cli.command("list")
def list_command():
    """Each export with the version it would be served at."""
    for row in service.describe_exports():
        export, version, last = row["export"], row["version"], row["last_run"]
        built = (f"from transformations of {version.last_modified.astimezone(timezone.utc):%Y-%m-%d %H:%M} UTC"
                 if version.last_modified else "no transformation run yet" if export.transformations else "seeded")
        written = f"; last written {last.status}, {last.rows_written} rows" if last else ""
        click.echo(f"{export.id:<24} {export.title} ({built}{written})")


@exports_cli.command("write")
@click.argument("export_id")
@click.option("-o", "--output", default=None, help="File to write, or - for stdout (default: the export's name).")
@click.option("--user-email", default=None, help="Who to record as having written it.")
def write_command(export_id, output, user_email):
    """Write export EXPORT_ID (see `flask exports list`) to a file or stdout."""
    try:
        if output == "-":
            result = service.write_export(export_id, sys.stdout.buffer, user_email=user_email)
        else:
            with open(output or export_id, "wb") as handle:
                result = service.write_export(export_id, handle, user_email=user_email)
    except (UnknownExport, service.ExportFailed, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{result['export']}: {result['rows']} rows, {result['bytes']} bytes written "
               f"to {output or export_id}", err=True)
