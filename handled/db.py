"""The two database proxies, their pools, base models, the query log and the SELECT 1 probe, and the
one way to a direct connection.

``primary_db`` serves the ``config`` and ``customer`` schemas, ``data_db`` the
``workspace`` and ``reference`` schemas. Both initialise themselves from the
settings on first use, so importing models never opens a connection. In
single-database mode both proxies point at one pooled database object, so they
share one pool (and one transaction per thread).

Work that needs a connection of its own beside the pool (migrations, checks, a
build's slices, split/unsplit copies, backups) opens it with
``direct_connection``: short-lived, named ``handled-<purpose>`` in
pg_stat_activity, and a failure to connect becomes one sentence
(``ConnectionProblem``).
"""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from contextvars import ContextVar

import psycopg2
from peewee import DatabaseProxy, DateTimeField, InterfaceError, Model, OperationalError, PeeweeException
from playhouse.pool import PooledPostgresqlDatabase

from handled.errors import Unavailable, first_line
from handled.settings import DatabaseConfig, Settings, get_settings

log = logging.getLogger("handled.db")

# Which proxy issued the statement being run (for the query log in single mode,
# where one database object serves both proxies).
_current_label: ContextVar[str | None] = ContextVar("handled_db_label", default=None)
_quiet: ContextVar[bool] = ContextVar("handled_db_quiet", default=False)
_expected_failures: ContextVar[tuple] = ContextVar("handled_db_expected_failures", default=())
_init_lock = threading.Lock()
DIRECT_CONNECT_TIMEOUT = 5

# A pooled database (or a raw COPY on it) stopped answering: not a bug, and the
# edges (cli_support, error_pages) turn it into "a database is not answering".
NOT_ANSWERING = (OperationalError, InterfaceError, psycopg2.OperationalError)

# How a lost or refused connection shows, as opposed to a statement that failed: SQLSTATE class 08
# and the shutdown codes, then the words of the errors that carry no SQLSTATE (libpq, PgBouncer).
_LOST_CODES = ("08", "57P01", "57P02", "57P03")
_LOST_WORDS = ("server closed the connection", "connection already closed", "no message from the libpq",
               "could not receive data from server", "could not send data to server", "connection not open",
               "ssl connection has been closed unexpectedly", "terminating connection",
               "the database system is", "could not connect",
               "connection refused", "timeout expired", "server login has been failing",
               "pgbouncer cannot connect to server", "server conn crashed", "query_wait_timeout")


class TimestampTzField(DateTimeField):
    """TIMESTAMP WITH TIME ZONE: every timestamp in handled is absolute."""

    field_type = "TIMESTAMPTZ"


SERIAL_MAX = 2_147_483_647  # the largest id a SERIAL column holds


def is_serial_id(value: int) -> bool:
    """Whether ``value`` can be the id of a SERIAL row (an id from a URL may be any size; asking
    PostgreSQL about a bigger one fails with "integer out of range" instead of finding nothing)."""
    return 1 <= value <= SERIAL_MAX


def contains_pattern(text: str) -> str:
    """An ILIKE pattern matching ``text`` anywhere, with ``%``, ``_`` and ``\\`` taken literally
    (PostgreSQL's LIKE escapes with a backslash by default)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class HandledDatabase(PooledPostgresqlDatabase):
    """A pooled PostgreSQL database that knows its role and logs its statements."""

    def __init__(self, config: DatabaseConfig, label: str, log_queries: bool):
        connect_kwargs = config.connect_kwargs()
        connect_kwargs.setdefault("application_name", f"handled-{label}")
        connect_kwargs.setdefault("connect_timeout", 5)
        super().__init__(
            config.dbname,
            max_connections=config.pool_size,
            timeout=config.pool_timeout,
            stale_timeout=300,
            **connect_kwargs,
        )
        self.config = config
        self.label = label
        self.log_queries = log_queries
        self.query_hooks.append(self._log_query_event)

    @property
    def pgbouncer(self) -> bool:
        """True behind a transaction pooler: no session state may be relied on."""
        return self.config.pgbouncer

    def _log_query_event(self, event) -> None:
        label = _current_label.get() or self.label
        if event.exception is not None:
            if _could_not_connect(event.exception):   # not about this SQL: the edges say which database and why
                log.debug("[%s] could not connect: %s", label, first_line(event.exception))
                return
            if isinstance(event.exception, _expected_failures.get()):   # the caller turns it into a sentence
                log.debug("[%s] %.1f ms failed as expected (%s)", label, event.duration * 1000,
                          first_line(event.exception))
                return
            log.warning("[%s] %.1f ms failed (%s): %s", label, event.duration * 1000,
                        str(event.exception).strip(), event.sql)
        elif self.log_queries and not _quiet.get():
            log.info("[%s] %.1f ms %s", label, event.duration * 1000, event.sql)

    def pool_stats(self) -> dict:
        """In-use and idle connection counts of this process's pool."""
        return {"in_use": len(self._in_use), "idle": len(self._connections),
                "max": self._max_connections}


def connection_lost(exc: BaseException | None) -> bool:
    """True when ``exc`` says a database could not be reached or went away mid-statement (an
    outage: expected, told in one line), not that a statement failed (a bug or bad data).

    Looks through the database errors ``exc`` was raised from (peewee wraps psycopg2's; a
    failed ROLLBACK follows the lost connection it tried to end), never past another kind of
    error: a bug raised while handling an outage stays a bug."""
    seen = 0
    while isinstance(exc, (psycopg2.Error, PeeweeException, ConnectionProblem)) and seen < 10:
        if isinstance(exc, ConnectionProblem):
            return True
        code = getattr(exc, "pgcode", None) or ""
        if code.startswith(_LOST_CODES):
            return True
        text = str(exc).lower()
        if any(words in text for words in _LOST_WORDS):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def _could_not_connect(error: Exception) -> bool:
    """True when the statement never reached a server (the connection could not be opened)."""
    text = str(error).lstrip().lower()
    return text.startswith(("connection to server", "could not connect", "could not translate host name"))


class LazyDatabaseProxy(DatabaseProxy):
    """A DatabaseProxy that initialises both proxies from settings on first use
    and tags the statements it runs with its own name for the query log."""

    __slots__ = ("obj", "_callbacks", "_Model", "label")

    def __init__(self, label: str):
        super().__init__()
        object.__setattr__(self, "label", label)

    def _target(self):
        if self.obj is None:
            init_databases()
        return self.obj

    def __getattr__(self, attr):
        value = getattr(self._target(), attr)
        if attr in ("execute", "execute_sql"):
            return _labelled(value, self.label)
        return value

    def __enter__(self):
        return self._target().__enter__()

    def __exit__(self, *exc):
        return self._target().__exit__(*exc)

    @property
    def initialized(self) -> bool:
        return self.obj is not None


def _labelled(method, label: str):
    def run(*args, **kwargs):
        token = _current_label.set(label)
        try:
            return method(*args, **kwargs)
        finally:
            _current_label.reset(token)
    return run


primary_db = LazyDatabaseProxy("primary")
data_db = LazyDatabaseProxy("data")


class PrimaryModel(Model):
    """Base of every model in the PRIMARY database (config, customer)."""

    class Meta:
        database = primary_db
        legacy_table_names = False


class DataModel(Model):
    """Base of every model in the DATA database (workspace, reference)."""

    class Meta:
        database = data_db
        legacy_table_names = False


def init_databases(settings: Settings | None = None) -> None:
    """Point both proxies at databases built from ``settings`` (no connection yet)."""
    with _init_lock:
        if settings is None and primary_db.obj is not None:
            return  # another thread initialised them meanwhile
        settings = settings or get_settings()
        close_databases()
        if settings.split_db_mode:
            primary = HandledDatabase(settings.primary, "primary", settings.log_db_queries)
            data = HandledDatabase(settings.data, "data", settings.log_db_queries)
        else:
            primary = data = HandledDatabase(settings.primary, "primary+data", settings.log_db_queries)
        primary_db.initialize(primary)
        data_db.initialize(data)


def _initialised_databases() -> list[HandledDatabase]:
    """Each distinct database object behind the proxies (one in single mode)."""
    found = []
    for proxy in (primary_db, data_db):
        if proxy.obj is not None and all(proxy.obj is not d for d in found):
            found.append(proxy.obj)
    return found


def close_databases() -> None:
    """Close every pooled connection of both proxies (at shutdown or re-init)."""
    for database in _initialised_databases():
        database.close_all()


def release_connections() -> None:
    """Return this thread's connections to their pools (end of a request or job)."""
    for database in _initialised_databases():
        if not database.is_closed():
            database.close()


def discard_broken_connections() -> None:
    """Forget this thread's pooled connections that the server closed under it (a lost
    connection), so the next statement opens a new one: what failed can still be recorded,
    on the same server once it answers (single mode) or on the other one (split mode)."""
    for database in _initialised_databases():
        conn = None if database.is_closed() else database._state.conn
        if conn is not None and conn.closed and not database.in_transaction():
            database.manual_close()


@contextmanager
def quiet_queries():
    """Keep statement logging quiet inside the block (bulk builds)."""
    token = _quiet.set(True)
    try:
        yield
    finally:
        _quiet.reset(token)


@contextmanager
def expected_failures(*errors: type[Exception]):
    """A statement inside that fails with one of ``errors`` is logged at DEBUG, not as a WARNING
    with its SQL: the caller catches it and tells the user in one sentence (a unique email)."""
    token = _expected_failures.set(_expected_failures.get() + errors)
    try:
        yield
    finally:
        _expected_failures.reset(token)


def probe(proxy, *, driver_words: bool = False) -> str | None:
    """None when the database behind ``proxy`` answers ``SELECT 1``; else a sentence saying why not.

    The failed connection is closed, so the pool never hands it to the next request.
    ``driver_words`` appends the driver's own first line when the sentence lacks it
    (/healthz, read by operators who may need the exact words).
    """
    try:
        if not proxy.is_closed() and proxy.connection().closed:
            proxy.manual_close()   # this thread's connection is the one that just broke: ask on a new one
        proxy.execute_sql("SELECT 1").fetchone()
        return None
    except Exception as exc:  # any driver or pool failure means "not answering"
        error = exc
    try:
        proxy.manual_close()
    except Exception:  # already closed or never opened
        pass
    sentence = explain_connection_error(proxy.obj.config, error)
    words = first_line(error)
    return sentence if not driver_words or words in sentence else f"{sentence} ({words})"


# --- direct connections -------------------------------------------------------

class ConnectionProblem(Unavailable):
    """A database cannot be reached; the message says which and why."""


@contextmanager
def direct_connection(config: DatabaseConfig, purpose: str, *, autocommit: bool = True):
    """A psycopg2 connection of its own (not from a pool), closed on exit.

    ``config`` comes from the caller's ``Settings.direct_database(side)``
    (PRIMARY_MIGRATION_URL for PRIMARY when set, so tools bypass a transaction
    pooler) or is a URL the caller was given (a split target, a restore target):
    never from process settings read here. ``purpose`` names the connection
    ``handled-<purpose>`` in pg_stat_activity unless the URL names it.
    A failure to connect raises ``ConnectionProblem`` with a sentence to act on.
    """
    kwargs = config.connect_kwargs()
    kwargs.setdefault("connect_timeout", DIRECT_CONNECT_TIMEOUT)
    kwargs.setdefault("application_name", f"handled-{purpose}")
    try:
        conn = psycopg2.connect(dbname=config.dbname, **kwargs)
    except psycopg2.Error as exc:
        raise ConnectionProblem(explain_connection_error(config, exc)) from None
    conn.autocommit = autocommit
    try:
        yield conn
    finally:
        conn.close()


@contextmanager
def transaction_on(conn):
    """One explicit transaction on an autocommit psycopg2 connection: committed, or rolled back on
    error (unless the connection is gone); the connection is autocommit again afterwards."""
    conn.autocommit = False
    try:
        with conn.cursor() as cur:
            yield cur
        conn.commit()
    except BaseException:
        if not conn.closed:
            conn.rollback()
        raise
    finally:
        if not conn.closed:
            conn.autocommit = True


def explain_connection_error(config: DatabaseConfig, error: Exception) -> str:
    """One sentence a person can act on, for a failed connection."""
    text = str(error).strip()
    where = f"{config.host or 'localhost'}:{config.port or 5432}"
    var = config.variable
    lowered = text.lower()
    if f'database "{config.dbname}" does not exist' in text:
        return (f"The database {config.dbname!r} named by {var} does not exist on {where}; "
                f"create it (createdb -h {config.host or 'localhost'} {config.dbname}) or run the README setup command.")
    if "role" in lowered and "does not exist" in lowered:
        return (f"The role {config.user!r} in {var} does not exist on {where}; "
                "use an existing role or create it (createuser).")
    if "password authentication failed" in lowered:
        return f"PostgreSQL at {where} refused the password for {config.user!r} in {var}."
    tls = _certificate_problem(config, lowered, where)
    if tls:
        return tls
    if "does not support ssl" in lowered or "server does not support ssl" in lowered:
        return (f"{var} asks for TLS (sslmode={config.libpq_params.get('sslmode')}) but the server "
                f"at {where} does not offer it; enable ssl on the server or change sslmode.")
    if "connection refused" in lowered or "could not connect" in lowered or "timeout expired" in lowered \
            or "could not translate host name" in lowered:
        return (f"Cannot reach PostgreSQL at {where} ({var}): the server is not running "
                "or the host/port is wrong.")
    return f"Cannot connect to {config.display()} ({var}): {first_line(error)}"


def _certificate_problem(config: DatabaseConfig, lowered: str, where: str) -> str | None:
    """The sentence for a server certificate that sslmode=verify-ca/verify-full refused, if that is it."""
    var, params = config.variable, config.libpq_params
    mode, root = params.get("sslmode", "prefer"), params.get("sslrootcert", "~/.postgresql/root.crt")
    if "root certificate file" in lowered and "does not exist" in lowered:
        return (f"{var} asks to verify the server's certificate (sslmode={mode}) against sslrootcert={root}, "
                "which does not exist; point sslrootcert at the certificate of the CA that signed the server's.")
    if "certificate verify failed" in lowered:
        return (f"The certificate of PostgreSQL at {where} is not signed by the CA in sslrootcert={root} "
                f"({var}, sslmode={mode}); point sslrootcert at the CA that signed it, or the server is not "
                "the one you meant.")
    if "does not match host name" in lowered:
        return (f"The certificate of PostgreSQL at {where} is not issued for the host {config.host!r} that {var} "
                f"names (sslmode={mode} checks the name); use a host name the certificate holds.")
    return None

