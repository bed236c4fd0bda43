"""Schema tooling: yoyo migrations per side, what each migration creates, catalog and drift, `flask db check`."""


def init_app(app) -> None:
    """Register `flask db` (migrations, checks; the operations add split/unsplit to it)."""
    from handled.schema.cli import db_cli

    app.cli.add_command(db_cli)
