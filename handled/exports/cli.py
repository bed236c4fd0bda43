"""``flask exports list|write``."""

from __future__ import annotations

import sys
from datetime import timezone

import click

from handled.cli_support import HandledGroup
from handled.context import cli_context
from handled.errors import HandledError
from handled.exports import service

exports_cli = HandledGroup("exports", help="JSON and CSV files from the reference tables.")


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
def write_command(export_id, output):
    """Write export EXPORT_ID (see `flask exports list`) to a file or stdout."""
    # no progress sink: the one report (rows written) is the summary line printed below
    ctx = cli_context()
    if output == "-":
        result = service.write_export(ctx, export_id, sys.stdout.buffer)
    else:
        with open_output(output or export_id) as handle:
            result = service.write_export(ctx, export_id, handle)
    click.echo(f"{result['export']}: {result['rows']} rows, {result['bytes']} bytes written "
               f"to {output or export_id}", err=True)


def open_output(path: str):
    """The file to write, or the reason it cannot be opened as the one line the user sees."""
    try:
        return open(path, "wb")
    except OSError as exc:
        raise HandledError(str(exc)) from None
