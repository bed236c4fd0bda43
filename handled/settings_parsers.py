"""The building blocks of the settings table in ``handled.settings``.

A row of that table is a ``Variable``: its name, a parser, its default, its unit
and its help text. A parser is called as ``parse(raw, variable)`` with the raw
string (never empty: an empty value means "unset", handled by the loader) and
returns the typed value or raises ``SettingsError`` with one sentence naming the
variable in the words of its unit. This module reads no environment itself.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qsl, unquote, urlsplit

from handled.errors import HandledError, redact_url  # noqa: F401 (settings re-exports it)

TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off", ""}

# Query parameters handled understands itself; everything else goes to libpq.
APP_URL_PARAMS = {"connection_limit", "pgbouncer", "pool_timeout"}
DEFAULT_POOL_SIZE = 10
DEFAULT_POOL_TIMEOUT = 10

# The unit of a variable that counts things: its messages say "a whole number".
COUNT = "count"


class SettingsError(HandledError):
    """A setting is missing or wrong; the message names the variable."""

    status = 500     # the server is misconfigured, not the request
    exit_code = 2    # start-up stops (app.py), as for a usage error


@dataclass(frozen=True)
class Required:
    """The default of a variable that must be set."""

    hint: str      # finishes the sentence "NAME is not set; ..."
    example: str   # the value .env.example shows


@dataclass(frozen=True)
class Variable:
    """One row of the settings table."""

    name: str
    parse: Callable[[str, "Variable"], Any]
    default: Any    # a value, None (unset), a function computing it, or Required(...)
    help: str
    unit: str = ""  # seconds, bytes, days, characters, KiB, count; "" for text
    attribute: str = ""  # the Settings attribute; the lower-cased name when empty

    @property
    def required(self) -> bool:
        return isinstance(self.default, Required)

    @property
    def field(self) -> str:
        return self.attribute or self.name.lower()


@dataclass(frozen=True)
class Section:
    """Variables of one concern; ``about`` heads them in .env.example."""

    title: str
    about: str
    variables: tuple[Variable, ...]


def boolean(raw: str, var: Variable) -> bool:
    word = raw.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise SettingsError(f"{var.name} must be true or false, not {raw!r}.")


def text(raw: str, var: Variable) -> str:
    return raw.strip()


def verbatim(raw: str, var: Variable) -> str:
    """Passwords: spaces at either end belong to the value."""
    return raw


def whole(minimum: int = 1, maximum: int | None = None, zero_means: str | None = None):
    """A whole number from ``minimum`` (to ``maximum``). A count is described by its range
    ("a whole number greater than 0"); a quantity by its unit ("a whole number of seconds")."""
    limits = (f"from {minimum} to {maximum}" if maximum is not None
              else "greater than 0" if minimum == 1 else f"at least {minimum}")

    def parse(raw: str, var: Variable) -> int:
        digits = raw.strip()
        fits = digits.isdigit() and minimum <= int(digits) and (maximum is None or int(digits) <= maximum)
        if var.unit == COUNT:
            if not fits:
                raise SettingsError(f"{var.name} must be a whole number {limits}, not {raw!r}.")
        elif not digits.isdigit():
            note = f" (0 = {zero_means})" if zero_means else ""
            raise SettingsError(f"{var.name} must be a whole number of {var.unit}{note}, not {raw!r}.")
        elif not fits:
            raise SettingsError(f"{var.name} must be {limits} {var.unit}, not {int(digits)}.")
        return int(digits)
    return parse


OLDEST_SERVER_VERSION = 130000   # PostgreSQL 13 (server_version_num): the oldest release handled runs on


@dataclass(frozen=True, order=True)
class ServerVersion:
    """A PostgreSQL release as its server_version_num (160004 is 16.4); shown as 16.4, or 16 for 160000."""

    number: int

    def __str__(self) -> str:
        major, minor = divmod(self.number, 10000)
        return f"{major}.{minor}" if minor else str(major)


def server_version(raw: str, var: Variable) -> ServerVersion:
    """A PostgreSQL release written as 16 or 16.4, at least the oldest handled runs on."""
    found = re.fullmatch(r"(\d{1,3})(?:\.(\d{1,4}))?", raw.strip())
    if not found:
        raise SettingsError(f"{var.name} must be a PostgreSQL release such as 16 or 16.4, not {raw!r}.")
    version = ServerVersion(int(found.group(1)) * 10000 + int(found.group(2) or 0))
    if version.number < OLDEST_SERVER_VERSION:
        raise SettingsError(f"{var.name} is {version}, but handled needs PostgreSQL "
                            f"{ServerVersion(OLDEST_SERVER_VERSION)} or newer; the setting can only ask for more.")
    return version


PLACEHOLDER_PREFIX = "change-me"   # .env.example's secrets start so; a value still saying so is refused


def secret(min_length: int):
    """A random string of at least ``min_length`` characters."""
    def parse(raw: str, var: Variable) -> str:
        value = raw.strip()
        if len(value) < min_length:
            unset = "" if var.required else " (or leave it unset)"
            raise SettingsError(f"{var.name} is too short; use at least {min_length} random characters{unset}.")
        if value.lower().startswith(PLACEHOLDER_PREFIX):
            raise SettingsError(f"{var.name} is still the placeholder from .env.example; "
                                "set a long random string of your own.")
        return value
    return parse


def command_line(raw: str, var: Variable) -> tuple[str, ...]:
    """A command as its argument list, split like a shell would split it (quotes, backslashes), but
    never run through a shell: the program gets exactly these words, plus what handled adds."""
    try:
        words = tuple(shlex.split(raw))
    except ValueError as exc:   # an unclosed quote; the value itself may hold a credential: not quoted
        raise SettingsError(f"{var.name} cannot be split into words ({exc}); check its quotes.") from None
    if not words:
        raise SettingsError(f"{var.name} names no program.")
    return words


def email(raw: str, var: Variable) -> str:
    value = raw.strip()
    if "@" not in value:
        raise SettingsError(f"{var.name} must be an email address, not {value!r}.")
    return value


def redis_url(raw: str, var: Variable) -> str:
    """A Redis URL, kept whole (user, password and TLS query parameters reach redis-py)."""
    value = raw.strip()
    if not value.startswith(("redis://", "rediss://", "unix://")):
        raise SettingsError(f"{var.name} must start with redis://, rediss:// or unix:// "
                            f"(got {redact_url(value)!r}).")
    return value


def existing_folder(why: str):
    """A folder that must already exist; ``why`` says who fills it."""
    def parse(raw: str, var: Variable) -> str:
        folder = raw.strip()
        if not Path(folder).is_dir():
            raise SettingsError(f"{var.name} ({folder}) is not an existing folder; create it ({why}).")
        return folder
    return parse


def database_url(raw: str, var: Variable) -> DatabaseConfig:
    return parse_database_url(var.name, raw)


def direct_database_url(raw: str, var: Variable) -> DatabaseConfig:
    """A URL for migrations and copies: PgBouncer's transaction pooling would break them."""
    config = parse_database_url(var.name, raw)
    if config.pgbouncer:
        raise SettingsError(f"{var.name} must be a direct connection, not one through PgBouncer (pgbouncer=true).")
    return config


@dataclass(frozen=True)
class DatabaseConfig:
    """One PostgreSQL database as named by a *_DATABASE_URL variable."""

    variable: str
    host: str | None
    port: int | None
    dbname: str
    user: str | None
    password: str | None = field(repr=False)
    libpq_params: dict = field(default_factory=dict)
    pool_size: int = DEFAULT_POOL_SIZE
    pool_timeout: int = DEFAULT_POOL_TIMEOUT
    pgbouncer: bool = False

    @property
    def identity(self) -> tuple:
        """What makes two URLs the same database (credentials aside)."""
        return (self.host or "localhost", self.port or 5432, self.dbname)

    def connect_kwargs(self) -> dict:
        """Keyword arguments for psycopg2.connect (libpq parameters only)."""
        kwargs = dict(self.libpq_params)
        for key in ("host", "port", "user", "password"):
            value = getattr(self, key)
            if value is not None:
                kwargs[key] = value
        return kwargs

    def display(self) -> str:
        """The URL with its password redacted (``postgresql://user:***@host/db``), for messages and pages."""
        who = f"{self.user}{':***' if self.password is not None else ''}@" if self.user else ""
        where = self.host or "localhost"
        port = f":{self.port}" if self.port else ""
        return f"postgresql://{who}{where}{port}/{self.dbname}"

    def dsn(self, *, password: bool = True) -> str:
        """A libpq key=value string (used by psql, pg_dump and yoyo); ``password=False`` leaves the
        password out, for a command line (the tool then reads PGPASSWORD)."""
        parts = [f"dbname={_dsn_quote(self.dbname)}"]
        for key, value in self.connect_kwargs().items():
            if key != "password" or password:
                parts.append(f"{key}={_dsn_quote(str(value))}")
        return " ".join(parts)


def _dsn_quote(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


def parse_database_url(variable: str, url: str) -> DatabaseConfig:
    """Parse postgresql://user:pass@host:port/db?params into a DatabaseConfig."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        # the parser's own words may quote part of the password (a "/" in it ends the host): never shown
        why = "its port is not a number" if "port" in str(exc).lower() else "it cannot be parsed"
        raise SettingsError(f"{variable} is not a valid URL ({why}); percent-encode any / ? # @ : in the "
                            "user name or password.") from None
    if parts.scheme not in ("postgresql", "postgres"):
        raise SettingsError(
            f"{variable} must start with postgresql:// (got {parts.scheme or 'no scheme'!r})."
        )
    dbname = unquote(parts.path.lstrip("/"))
    if not dbname:
        raise SettingsError(f"{variable} must name a database after the host, e.g. postgresql://localhost/handled.")
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    pgbouncer = params.get("pgbouncer")
    return DatabaseConfig(
        variable=variable,
        host=parts.hostname,
        port=port,
        dbname=dbname,
        user=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        libpq_params={k: v for k, v in params.items() if k not in APP_URL_PARAMS},
        pool_size=_url_int(variable, params, "connection_limit", DEFAULT_POOL_SIZE),
        pool_timeout=_url_int(variable, params, "pool_timeout", DEFAULT_POOL_TIMEOUT),
        pgbouncer=False if pgbouncer is None else boolean(pgbouncer, _url_param(variable, "pgbouncer")),
    )


def _url_param(variable: str, name: str) -> Variable:
    """A stand-in row so that a URL parameter's error names the variable and the parameter."""
    return Variable(f"{variable} parameter {name}", boolean, None, "")


def _url_int(variable: str, params: dict, name: str, default: int) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) <= 0:
        raise SettingsError(f"{variable} parameter {name} must be a positive whole number, not {raw!r}.")
    return int(raw)
