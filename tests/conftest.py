"""The test suite's entry: which fixture modules every test can use, and the modes summary.

Fixtures live in tests/fixtures/ by concern, helpers in tests/support/ by concern;
docs/TESTING.md describes the layout and how to add a test.
"""

from __future__ import annotations

from tests.support.environment import MODES

pytest_plugins = [
    "tests.fixtures.databases",   # db_mode, migrated_settings, settings (reset after each test), scratch
    "tests.fixtures.redis",       # redis_client
    "tests.fixtures.app",         # app, client, runner
    "tests.fixtures.accounts",    # login_client, csrf_token
    "tests.fixtures.imports",     # imp_settings, imp_app, files
    "tests.fixtures.browser",     # live_server, live_app, browser, artifacts_dir
    "tests.fixtures.workers",     # (autouse) job workers a test started are stopped after it
]


def pytest_terminal_summary(terminalreporter):
    """Say how many tests ran in each database mode, so both modes show in CI output."""
    counts = {mode: {"passed": 0, "failed": 0} for mode in MODES}
    for outcome in ("passed", "failed", "error"):
        for report in terminalreporter.stats.get(outcome, []):
            if getattr(report, "when", "call") not in ("call", "setup"):
                continue
            for mode in MODES:
                if f"[{mode}" in report.nodeid or f"-{mode}]" in report.nodeid or f"-{mode}-" in report.nodeid:
                    counts[mode]["passed" if outcome == "passed" else "failed"] += 1
    terminalreporter.write_sep("-", "database modes")
    for mode in MODES:
        terminalreporter.write_line(f"{mode:>6} mode: {counts[mode]['passed']} passed, "
                                    f"{counts[mode]['failed']} failed or errored")
