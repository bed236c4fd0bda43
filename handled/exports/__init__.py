"""Exports: JSON and CSV files streamed out of the reference tables."""


def init_app(app) -> None:
    """Register the export pages and `flask exports`."""
    from handled.exports.cli import exports_cli
    from handled.exports.views import bp

    app.register_blueprint(bp)
    app.cli.add_command(exports_cli)
