"""Transformations: registry, SQL, build-and-swap runner, run history, CLI and pages."""


def init_app(app) -> None:
    """Register the transformation and coverage pages and `flask transformations`."""
    from handled.transformations import coverage_views, views
    from handled.transformations.cli import transformations_cli

    app.register_blueprint(views.bp)
    app.register_blueprint(coverage_views.bp)
    app.cli.add_command(transformations_cli)
