"""docs/SECURITY.md's route table is the URL map: every route, its methods, who may use
it, CSRF, the body limit and the audit events it writes. A route added, removed or
re-guarded without the table changing fails here, and the failure prints the rows to
paste. The table runs without a database (the URL map needs none)."""

from __future__ import annotations

import re
from pathlib import Path

from handled import create_app
from handled.auth.permissions import endpoint_access
from handled.request_limits import FORM_BODY_BYTES, UPLOAD_MARK
from handled.settings import load_settings
from tests.support.databases import mode_env

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "SECURITY.md"
IGNORED_METHODS = {"HEAD", "OPTIONS"}
COLUMNS = ["Route", "Methods", "Access", "CSRF", "Body limit", "Audit events"]


def app_without_databases():
    return create_app(load_settings(mode_env("single", "handled_route_table_unused")))


def table_rows() -> list[dict]:
    text = DOC.read_text()
    section = text.split("## Routes", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert header == COLUMNS, header
    rows = []
    for line in lines[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows.append(dict(zip(COLUMNS, cells)))
    return rows


def unquote(cell: str) -> str:
    return cell.replace("`", "").strip()


def access_of(app, endpoint: str) -> str:
    access = endpoint_access(app, endpoint)
    if access == "permission":
        return app.view_functions[endpoint].required_permission
    return {"login": "signed in", "public": "public"}[access]


def body_limit_of(app, endpoint: str) -> str:
    view = app.view_functions[endpoint]
    return "MAX_UPLOAD_MB" if getattr(view, UPLOAD_MARK, False) else f"{FORM_BODY_BYTES // 1024} KiB"


def expected_rows(app) -> dict[tuple[str, str], dict]:
    expected = {}
    for rule in app.url_map.iter_rules():
        methods = set(rule.methods) - IGNORED_METHODS
        key = (rule.rule, ", ".join(sorted(methods)))
        expected[key] = {
            "Access": access_of(app, rule.endpoint),
            "CSRF": "yes" if methods - {"GET"} else "n/a",
            "Body limit": body_limit_of(app, rule.endpoint),
        }
    return expected


def paste_line(key, row) -> str:
    return (f"| `{key[0]}` | {key[1]} | `{row['Access']}` | {row['CSRF']} | {row['Body limit']} | — |")


def test_every_route_is_in_the_table_with_its_guard_csrf_and_body_limit():
    app = app_without_databases()
    expected = expected_rows(app)
    documented = {(unquote(row["Route"]), unquote(row["Methods"])): row for row in table_rows()}
    missing = [paste_line(key, row) for key, row in sorted(expected.items()) if key not in documented]
    extra = sorted(set(documented) - set(expected))
    assert not missing, "routes missing from docs/SECURITY.md:\n" + "\n".join(missing)
    assert not extra, f"docs/SECURITY.md lists routes the app does not have: {extra}"
    wrong = []
    for key, row in expected.items():
        doc_row = documented[key]
        for column in ("Access", "CSRF", "Body limit"):
            if unquote(doc_row[column]) != row[column]:
                wrong.append(f"{key[0]} {key[1]}: {column} says {doc_row[column]!r}, the app has {row[column]!r}")
    assert not wrong, "\n".join(wrong)


def test_no_route_is_exempt_from_csrf():
    app = app_without_databases()
    csrf = app.extensions["csrf"]
    assert not csrf._exempt_views and not csrf._exempt_blueprints
    assert app.config.get("WTF_CSRF_ENABLED", True) is True
    assert {"POST", "PUT", "PATCH", "DELETE"} <= set(app.config.get("WTF_CSRF_METHODS",
                                                                     ["POST", "PUT", "PATCH", "DELETE"]))


def test_every_audit_event_named_in_the_table_is_written_by_the_code():
    source = "\n".join(path.read_text() for path in (ROOT / "handled").rglob("*.py"))
    events = set()
    for row in table_rows():
        events |= {name for name in re.findall(r"`([a-z_]+\.[a-z_.]+)`", row["Audit events"])}
    assert len(events) >= 10
    unknown = sorted(name for name in events if f'"{name}"' not in source and f"'{name}'" not in source)
    assert not unknown, f"docs/SECURITY.md names audit events nothing in handled/ writes: {unknown}"
