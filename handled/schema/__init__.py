"""Schema tooling: yoyo migrations per side, what each migration creates, catalog and drift, `flask db check`."""


def init_app(app) -> None:
    """Register `flask db` (migrations, checks; handled.ops.init_app adds split/unsplit/prune-leftovers)."""
    from handled.schema.cli import db_cli

    app.cli.add_command(db_cli)
