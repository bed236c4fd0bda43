"""Services never look at Flask's request globals: they are handed a Context.

Only the edges (views, CLI commands, the web glue and the context adapters) may
import ``flask.request``, ``flask.g``, ``flask.current_app`` or flask-login's
``current_user``, ask ``has_request_context()`` ("no request, so trusted") or print
with click;
every other module under ``handled/`` is a service and takes who is acting and
which settings apply from its ``Context`` argument.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "handled"

# Where each request global comes from (a module or any module under it).
REQUEST_GLOBALS = {
    "flask": {"request", "g", "current_app", "has_request_context", "has_app_context"},
    "click": {"echo", "get_current_context", "ClickException", "progressbar"},
    "flask_login": {"current_user"},
    "handled.auth": {"current_user"},       # re-exported for the views
    "handled": {"current_settings"},        # current_app's settings
}

EDGE_NAMES = {"views.py", "cli.py", "web.py"}
EDGE_MODULES = {
    "handled/__init__.py", "handled/context.py", "handled/error_pages.py", "handled/cli_support.py",
    "handled/auth/permissions.py", "handled/ops/degraded.py", "handled/health.py", "handled/home.py",
    "handled/metrics.py", "handled/request_limits.py",
    "handled/auth/__init__.py",             # re-exports flask-login's current_user for the views
}


def is_edge(relative: str) -> bool:
    name = relative.rsplit("/", 1)[-1]
    return name in EDGE_NAMES or name.endswith("_views.py") or relative in EDGE_MODULES


def globals_of(module: str | None) -> set[str]:
    """The request globals ``module`` hands out (``flask.globals`` counts as ``flask``)."""
    if not module:
        return set()
    if module in REQUEST_GLOBALS:
        return REQUEST_GLOBALS[module]
    return set().union(*(names for source, names in REQUEST_GLOBALS.items()
                         if source != "handled" and module.startswith(source + ".")))


def request_globals_used(tree: ast.AST) -> set[str]:
    """Request globals the module imports by name, or reads as an attribute of an imported module."""
    used, attributes = set(), {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0:
            used |= {alias.name for alias in node.names if alias.name in globals_of(node.module)}
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if globals_of(alias.name):
                    attributes[alias.asname or alias.name] = globals_of(alias.name)
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.attr in attributes.get(node.value.id, ())):
            used.add(node.attr)
    return used


def service_modules_using_request_globals() -> dict[str, set[str]]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).as_posix()
        if is_edge(relative):
            continue
        used = request_globals_used(ast.parse(path.read_text(), filename=relative))
        if used:
            found[relative] = used
    return found


def test_service_modules_do_not_import_request_globals():
    offenders = {module: sorted(names) for module, names in service_modules_using_request_globals().items()}
    assert offenders == {}, ("these service modules read Flask request globals; take a Context argument "
                             f"instead (handled/context.py): {offenders}")


def test_the_check_sees_every_way_of_importing_a_request_global():
    samples = {
        "from flask import request": {"request"},
        "from flask import g as globals_": {"g"},
        "from flask_login import current_user": {"current_user"},
        "from handled.auth import current_user": {"current_user"},
        "from handled.auth.permissions import current_user": {"current_user"},
        "from flask.globals import request": {"request"},
        "from handled import current_settings": {"current_settings"},
        "from handled import audit": set(),
        "import flask\nflask.current_app.config": {"current_app"},
        "from flask import Blueprint, jsonify": set(),
        "from handled.context import web_context": set(),
        "from flask import has_request_context": {"has_request_context"},
        "import click\nclick.echo('x')": {"echo"},
    }
    for source, expected in samples.items():
        assert request_globals_used(ast.parse(source)) == expected, source


ALLOWED_IN_SERVICES = {("flask", "Blueprint")}      # a package __init__ declares its blueprint


def edge_imports(tree: ast.AST) -> set[str]:
    """Every name a module takes from Flask, flask-login or click (not just the request globals)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] in ("flask", "flask_login", "click") or node.module == "werkzeug.local":
                found |= {f"{node.module}.{a.name}" for a in node.names if (node.module, a.name) not in ALLOWED_IN_SERVICES}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] in ("flask", "flask_login", "click")}
    return found


def test_service_modules_import_nothing_from_the_web_or_cli_frameworks():
    offenders = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).as_posix()
        if not is_edge(relative):
            used = edge_imports(ast.parse(path.read_text(), filename=relative))
            if used:
                offenders[relative] = sorted(used)
    assert offenders == {}, f"service modules importing Flask/click (session, abort, url_for, ...): {offenders}"


def test_services_take_settings_from_their_context():
    """get_settings() reads the process environment: only create_app, the worker, db/cache fallbacks use it."""
    allowed = {"handled/__init__.py", "handled/settings.py", "handled/context.py", "handled/db.py", "handled/cache.py"}
    offenders = [path.relative_to(PACKAGE.parent).as_posix() for path in sorted(PACKAGE.rglob("*.py"))
                 if "get_settings(" in path.read_text() and path.relative_to(PACKAGE.parent).as_posix() not in allowed]
    assert offenders == []


def test_no_file_holds_an_unresolved_merge():
    """A merge conflict committed by mistake (its markers left in a file) fails here, with the
    file and line, before it fails somewhere far from its cause."""
    import subprocess

    root = PACKAGE.parent
    tracked = subprocess.run(["git", "ls-files"], cwd=root, capture_output=True, text=True, check=True).stdout
    markers = ("<" * 7 + " ", ">" * 7 + " ")
    found = []
    for name in tracked.splitlines():
        path = root / name
        if path.suffix in (".png", ".ico", ".gz", ".xlsx", ".xls") or not path.is_file():
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if line.startswith(markers):
                found.append(f"{name}:{number}: {line}")
    assert found == []
