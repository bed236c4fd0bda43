"""WSGI entry: ``gunicorn app:app``; ``flask`` finds ``app`` here from the repo root."""

import sys

from handled import create_app
from handled.settings import SettingsError

try:
    app = create_app()
except SettingsError as exc:
    sys.stderr.write(f"handled cannot start: {exc}\n")
    raise SystemExit(2) from None
