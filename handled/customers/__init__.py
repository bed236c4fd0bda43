"""customers pages (issue 4)."""

from flask import Blueprint

bp = Blueprint("customers", __name__)
