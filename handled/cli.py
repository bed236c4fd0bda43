"""Registers every ``flask`` command group on the app."""

from __future__ import annotations

from flask import Flask


def register_cli(app: Flask) -> None:
    """Every command group; imported here so a command module loads only with the app."""
    from handled.auth.cli import register as register_account_commands
    from handled.exports.cli import exports_cli
    from handled.integrations.cli import integrations_cli
    from handled.jobs.cli import jobs_cli
    from handled.ops.cli import register as register_ops_commands
    from handled.schema.cli import db_cli
    from handled.transformations.cli import transformations_cli

    app.cli.add_command(db_cli)
    register_account_commands(app)
    for group in (integrations_cli, transformations_cli, exports_cli, jobs_cli):
        app.cli.add_command(group)
    register_ops_commands(app)
