"""Customer pages: organizations (the operator's clients) and facilities (its warehouses)."""

from flask import Blueprint

bp = Blueprint("customers", __name__, url_prefix="/customers")

from handled.customers import views  # noqa: E402,F401  (routes)


def init_app(app) -> None:
    """Register the organisation and facility pages."""
    app.register_blueprint(bp)
