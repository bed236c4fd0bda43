"""Integrations: public carrier and census files imported into the DATA database.

``registry`` lists the integrations (one module each in ``definitions``),
``sources`` reads files, ``loader`` streams them into PostgreSQL with COPY,
``service`` runs an import end to end and records it in ``history``;
``cli`` and ``views`` are the thin edges. See docs/IMPORTS.md.
"""

from handled.integrations.registry import UnknownIntegration, all_integrations, get_integration

__all__ = ["UnknownIntegration", "all_integrations", "get_integration"]


def init_app(app) -> None:
    """Register the import pages and `flask integrations`."""
    from handled.integrations.cli import integrations_cli
    from handled.integrations.views import bp

    app.register_blueprint(bp)
    app.cli.add_command(integrations_cli)
