"""The CLI edge: one command-group class for every ``flask`` group, and the CLI progress sink.

``HandledGroup`` wraps every command it holds so that

- a ``HandledError`` becomes its sentence (and hint) on stderr and the error's exit code;
- a database that does not answer becomes one sentence naming it and exit 1;
- so does a Redis server that does not answer (``--background`` runs, the job commands);
- anything else is a bug: its traceback is logged and the command exits 1 with one line.

A command module therefore never catches domain errors itself: it builds the
context (``handled.context.cli_context``), calls one service and prints.
"""

from __future__ import annotations

import functools
import logging
import sys

import click
import redis
from flask.cli import AppGroup

from handled.cache import outage_sentence
from handled.db import NOT_ANSWERING, connection_lost, data_db, primary_db, probe
from handled.errors import HandledError, first_line, redact_url

log = logging.getLogger("handled.cli")


class HandledGroup(AppGroup):
    """A ``flask`` command group whose commands turn errors into one line and an exit code."""

    def command(self, *args, **kwargs):
        wrap = super().command(*args, **kwargs)

        def decorator(fn):
            return wrap(handle_errors(fn))
        return decorator

    def group(self, *args, **kwargs):
        kwargs.setdefault("cls", HandledGroup)
        return super().group(*args, **kwargs)


def handle_errors(fn):
    """Run a command body; errors become one line on stderr and a non-zero exit."""
    @functools.wraps(fn)
    def run(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except HandledError as exc:
            fail(exc.full_text(), exc.exit_code)
        except NOT_ANSWERING as exc:
            fail(database_failure(exc), 1)
        except redis.RedisError as exc:
            fail(outage_sentence(exc), 1)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise   # click's own usage errors, --help, Ctrl-C at a prompt: click prints them
        except Exception as exc:
            if connection_lost(exc):   # lost in another guise (psycopg2's DatabaseError mid-COPY)
                fail(database_failure(exc), 1)
            # a bug: its traceback goes to the log, the operator gets one line
            log.exception("flask %s failed unexpectedly", fn.__name__)
            fail(f"The command failed unexpectedly ({fn.__name__}); the error was logged above.", 1)
    return run


def database_failure(exc: Exception) -> str:
    """The sentence for a query that failed because a database did not answer: the probe of
    each side says which one and why (missing database, unknown role, wrong password, server
    down), so the operator is not left with the driver's words."""
    for proxy in (primary_db, data_db):
        try:
            sentence = probe(proxy)
        except Exception:   # the proxies are not set up (no app): fall back to the driver's line
            sentence = None
        if sentence:
            return f"{sentence} See docs/OPS_RUNBOOK.md."
    return f"A database is not answering ({first_line(exc)}); see docs/OPS_RUNBOOK.md."


def fail(message: str, exit_code: int = 1):
    click.echo(f"Error: {redact_url(message)}", err=True)
    sys.exit(exit_code)


def echo_progress(phase: str, done: int | None = None, total: int | None = None,
                  message: str | None = None) -> None:
    """The CLI's progress sink: one line per report on stderr (stdout stays for results)."""
    step = f" ({done}/{total})" if done is not None and total else ""
    click.echo(f"  {message or phase}{step}", err=True)
