"""Who is acting, with which settings, and where progress goes: the first argument of services.

Every service that decides (may this actor do it?), records (audit, run history)
or reports (progress) takes a ``Context`` as its first argument. A service never
looks at Flask's request globals, ``current_app`` or click to find out who is
acting or which settings apply: it reads them from the context it was handed, so
the same rule holds whether a page, a CLI command or a background job called it
(``tests/test_layout.py`` fails when a service module imports them).

Three adapters build a context, and they are the only code here that touches
Flask's request globals:

- ``web_context()``: the signed-in user of the current request (channel ``web``);
- ``cli_context()``: the command-line operator, a system actor (channel ``cli``);
- ``job_context(actor_data, progress, signed=...)``: the user who queued the job (channel
  ``job``; a CLI operator keeps ``system`` only when the worker checked the job's signature),
  reporting progress into the RQ job's meta for ``/jobs/<id>``.

Progress is one protocol: ``progress(phase, done=None, total=None, message=None)``.
``NO_PROGRESS`` drops reports (tests, pages that wait for the result).
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass, field, replace
from typing import Protocol

from handled.settings import Settings

CHANNELS = ("web", "cli", "job")


class Progress(Protocol):
    """Where a long service says what it is doing: a phase, how far, and a line for people."""

    def __call__(self, phase: str, done: int | None = None, total: int | None = None,
                 message: str | None = None) -> None: ...


def no_progress(phase: str, done: int | None = None, total: int | None = None,
                message: str | None = None) -> None:
    """Reports go nowhere."""


NO_PROGRESS: Progress = no_progress


def os_user() -> str:
    """The name of the account this process runs as (its uid when the account has no name)."""
    uid = os.geteuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


@dataclass(frozen=True)
class Actor:
    """Who is acting: a signed-in user, the CLI operator, or the user a job runs for."""

    id: int | None
    email: str | None
    permissions: frozenset = field(default_factory=frozenset)
    address: str | None = None
    channel: str = "web"
    system: bool = False        # the CLI operator: holds every permission, has no account
    name: str | None = None     # a system actor's name in the audit log ("cli:<os user>")

    def __post_init__(self) -> None:
        if self.channel not in CHANNELS:
            raise ValueError(f"unknown channel {self.channel!r}")

    def can(self, permission: str) -> bool:
        return self.system or permission in self.permissions

    @property
    def label(self) -> str:
        """How the audit log and run history name this actor."""
        return self.email or self.name or self.channel

    def to_job(self) -> dict:
        """Plain values to put on the queue; ``Actor.from_job`` rebuilds it in the worker."""
        return {"id": self.id, "email": self.email, "permissions": sorted(self.permissions),
                "address": self.address, "system": self.system, "name": self.name}

    @classmethod
    def from_job(cls, data: dict | None, *, signed: bool = False) -> Actor:
        """The actor of a queued job, always on channel ``job``. ``system`` is kept only when the
        job's signature held (``signed``, checked by the worker: handled/jobs/signing.py) and the
        actor is a CLI operator (no account, named ``cli:...``); otherwise it is dropped."""
        data = data or {}
        name = data.get("name")
        system = (signed and data.get("system") is True and data.get("id") is None
                  and isinstance(name, str) and name.startswith("cli:"))
        return cls(id=data.get("id"), email=data.get("email"), permissions=frozenset(data.get("permissions") or ()),
                   address=data.get("address"), channel="job", system=system, name=name)

    @classmethod
    def cli_operator(cls) -> Actor:
        """The person at the terminal: a system actor named ``cli:<os user>`` in the audit log.

        The OS user is the account the process runs as (its effective uid, looked up in the
        password database), not ``$USER`` or ``$LOGNAME``, which anyone can set. It says
        which account ran the command, not which person: people sharing one account (or
        sudo -u handled) are one name; give each operator their own account to tell them apart.
        """
        return cls(id=None, email=None, permissions=frozenset(), address=None, channel="cli", system=True,
                   name=f"cli:{os_user()}")

    @classmethod
    def anonymous(cls, address: str | None = None) -> Actor:
        return cls(id=None, email=None, permissions=frozenset(), address=address, channel="web")


@dataclass(frozen=True)
class Context:
    """Settings, actor and progress sink of one call into the services."""

    settings: Settings
    actor: Actor
    progress: Progress = NO_PROGRESS

    def with_progress(self, progress: Progress) -> Context:
        return replace(self, progress=progress)

    def with_actor(self, actor: Actor) -> Context:
        return replace(self, actor=actor)


# -- the three adapters ------------------------------------------------------------------------

def settings_of(app) -> Settings:
    """The settings a Flask app was created with (``create_app`` keeps them in its config)."""
    return app.config["HANDLED_SETTINGS"]


def app_settings() -> Settings:
    """The settings of the running Flask app (inside a request or a ``flask`` command)."""
    from flask import current_app

    return settings_of(current_app)


def web_context(progress: Progress = NO_PROGRESS) -> Context:
    """The context of the current web request: its signed-in user (or anonymous) and address."""
    from flask import request
    from flask_login import current_user

    address = request.remote_addr
    if current_user and current_user.is_authenticated:
        actor = Actor(id=current_user.id, email=current_user.email, permissions=frozenset(current_user.permissions),
                      address=address, channel="web")
    else:
        actor = Actor.anonymous(address)
    return Context(app_settings(), actor, progress)


def system_context(settings: Settings, progress: Progress = NO_PROGRESS) -> Context:
    """The operator acting with settings given explicitly (scripts, benchmarks, tests)."""
    return Context(settings, Actor.cli_operator(), progress)


def cli_context(progress: Progress = NO_PROGRESS) -> Context:
    """The context of a ``flask`` command: the operator at the terminal, a system actor
    that the run history and audit log record as ``cli:<os user>``."""
    return Context(app_settings(), Actor.cli_operator(), progress)


def job_settings() -> Settings:
    """The settings a job runs with: the app's under `flask jobs worker`, else the environment's."""
    from flask import has_app_context

    from handled.settings import get_settings

    return app_settings() if has_app_context() else get_settings()


def job_context(actor_data: dict | None, progress: Progress, settings: Settings | None = None, *,
                signed: bool = False) -> Context:
    """The context of a background job: the user who queued it; ``progress`` is the job's own
    (handled/jobs/progress.py), which the worker binds when the job starts. ``signed``: the
    worker checked the job's signature (only then may a CLI operator's job keep ``system``)."""
    if settings is None:    # `flask jobs worker` runs its jobs inside the app's context
        settings = job_settings()
    return Context(settings, Actor.from_job(actor_data, signed=signed), progress)
