"""The test suite's entry: which fixture modules every test can use, and the modes summary.

Fixtures live in tests/fixtures/ by concern, helpers in tests/support/ by concern;
docs/TESTING.md describes the layout and how to add a test.
"""

from __future__ import annotations

import pytest

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


ONE_MODE_HELP = ("one_mode: what the test proves does not depend on the database mode (it touches only "
                 "PRIMARY, or refuses input before anything is written), so it runs in single mode only; "
                 "split mode keeps the tests whose behaviour crosses the two databases")


_LEFT_OUT = pytest.StashKey[int]()


RUNS_LONG_HELP = ("runs_long(seconds): takes tens of seconds; started before every other test, the longest "
                  "first, so that the test processes (pytest-xdist) finish together instead of one ending on "
                  "it alone")


def pytest_configure(config):
    config.addinivalue_line("markers", ONE_MODE_HELP)
    config.addinivalue_line("markers", RUNS_LONG_HELP)
    config.addinivalue_line("markers", "flow(name): the test exercises the flow a docs section of that name "
                                       "describes (tests/test_ops_docs.py checks the docs against the marks)")


def _mode_of(item) -> str | None:
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return None
    return callspec.params.get("db_mode") or next(
        (value for value in callspec.params.values() if value in MODES), None)


def _longest_first(item) -> float:
    marker = item.get_closest_marker("runs_long")
    return -marker.args[0] if marker else 0.0


def pytest_collection_modifyitems(config, items):
    """Leave out the split-mode run of every test marked ``one_mode`` (reported as deselected), and
    put the tests marked ``runs_long`` first."""
    kept, left_out = [], []
    for item in items:
        if item.get_closest_marker("one_mode") and _mode_of(item) == "split":
            left_out.append(item)
        else:
            kept.append(item)
    if left_out:
        config.hook.pytest_deselected(items=left_out)
    items[:] = sorted(kept, key=_longest_first)   # stable: the rest stays as collected
    config.stash[_LEFT_OUT] = len(left_out)


def pytest_sessionfinish(session):
    """In an xdist worker: hand the count of left-out runs to the controller (it collects nothing)."""
    if hasattr(session.config, "workeroutput"):
        session.config.workeroutput["left_out"] = session.config.stash.get(_LEFT_OUT, 0)


@pytest.hookimpl(optionalhook=True)   # an xdist hook: `-p no:xdist` runs without the plugin
def pytest_testnodedown(node, error):
    """In the xdist controller: every worker collected the same tests, so any one's count is the run's."""
    left_out = getattr(node, "workeroutput", {}).get("left_out")
    if left_out is not None:
        node.config.stash[_LEFT_OUT] = max(left_out, node.config.stash.get(_LEFT_OUT, 0))


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
    left_out = terminalreporter.config.stash.get(_LEFT_OUT, 0)
    if left_out:
        terminalreporter.write_line(f"  (split-mode runs of {left_out} one_mode tests left out: "
                                    "what they prove does not depend on the mode)")
