"""Operations: moving PRIMARY between single and split mode, backups, rebuilds, metrics.

Every tool here opens its own direct, short-lived connections
(handled.db.direct_connection): they run from the CLI, never inside a web request.
"""

from handled.errors import HandledError


class OpsError(HandledError):
    """An operation cannot go on; the message says why and what to do."""


def init_app(app) -> None:
    """Register the DATA banner, the System page, /metrics, `flask backup|data`, and add
    `split|unsplit|prune-leftovers` to `flask db`."""
    from handled.ops import cli, web

    web.init_app(app)
    app.cli.add_command(cli.backup_cli)
    app.cli.add_command(cli.data_cli)
    # The moves act on the databases `flask db` migrates, so they sit in its group. ops adds them,
    # not schema: ops builds on schema (migrations, catalog), and schema must not know about ops.
    if "db" not in app.cli.commands:
        raise RuntimeError("handled.schema must come before handled.ops in FEATURES: ops adds to its `flask db`.")
    for command in cli.db_commands.commands.values():
        app.cli.commands["db"].add_command(command)
