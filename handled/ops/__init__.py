"""Operations: moving PRIMARY between single and split mode, backups, rebuilds, metrics.

Every tool here opens its own direct, short-lived connections
(handled.db.direct_connection): they run from the CLI, never inside a web request.
"""

from handled.errors import HandledError


class OpsError(HandledError):
    """An operation cannot go on; the message says why and what to do."""


def init_app(app) -> None:
    """Register the DATA banner, the System page, /metrics and `flask backup|data` (and `flask db split|unsplit|prune-leftovers`)."""
    from handled.ops import cli, web

    web.init_app(app)
    app.cli.add_command(cli.backup_cli)
    app.cli.add_command(cli.data_cli)
