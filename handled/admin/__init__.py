"""admin pages (issue 4)."""

from flask import Blueprint

bp = Blueprint("admin", __name__)
