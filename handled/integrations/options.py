"""The two import options, named as each channel offers them.

The CLI has flags (``--partial``, ``--force``); the upload form has two boxes
with the labels below (templates/integrations/_upload_form.html shows them from
here). A sentence that suggests an option names it the way the person reading
it can use it: ``ctx.actor.channel`` is "cli" for a command, "web" for a page
and "job" for a queued upload (queued from the pages, so it reads like "web").
"""

from __future__ import annotations

PARTIAL_LABEL = "Load the good rows even if some are rejected"
FORCE_LABEL = "Import again even if the same file was imported before"
LABELS = {"partial": PARTIAL_LABEL, "force": FORCE_LABEL}


def partial_hint(channel: str) -> str:
    """What to do about a file refused for its bad rows."""
    if channel == "cli":
        return "Fix the file, or import it with --partial to load the good rows."
    return (f'Fix the file, or import it again with "{PARTIAL_LABEL}" ticked (on the run page it '
            "already is) to load the good rows.")


def force_hint(channel: str) -> str:
    """What to do about a file skipped as already imported."""
    if channel == "cli":
        return "Use --force to import it again."
    return (f'To import it again, choose it again with "{FORCE_LABEL}" ticked (on the run page it '
            "already is).")
