"""Every environment variable handled reads, validated in one place.

Nothing else in the project reads ``os.environ``. ``load_settings()`` turns a
mapping (the environment merged over an optional ``.env`` file) into a frozen
``Settings``; any missing or contradictory value raises ``SettingsError`` with
one sentence that names the variable, so start-up can stop cleanly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off", ""}

# Query parameters handled understands itself; everything else goes to libpq.
APP_URL_PARAMS = {"connection_limit", "pgbouncer", "pool_timeout"}
DEFAULT_POOL_SIZE = 10


class SettingsError(Exception):
    """A setting is missing or wrong; the message names the variable."""


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
    pool_timeout: int = 10
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
        """The URL without its password, for messages and pages."""
        who = f"{self.user}@" if self.user else ""
        where = self.host or "localhost"
        port = f":{self.port}" if self.port else ""
        return f"postgresql://{who}{where}{port}/{self.dbname}"

    def dsn(self) -> str:
        """A libpq key=value string (used by psql, pg_dump and yoyo)."""
        parts = [f"dbname={_dsn_quote(self.dbname)}"]
        for key, value in self.connect_kwargs().items():
            parts.append(f"{key}={_dsn_quote(str(value))}")
        return " ".join(parts)


def _dsn_quote(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


@dataclass(frozen=True)
class Settings:
    primary: DatabaseConfig
    data: DatabaseConfig
    split_db_mode: bool
    redis_url: str
    secret_key: str = field(repr=False)
    log_db_queries: bool = False
    session_cache_ttl: int = 30
    primary_migration: DatabaseConfig | None = None
    # imports (handled/integrations)
    import_max_bytes: int = 1 << 30
    import_archive_dir: str = "var/archive"
    import_upload_dir: str = "var/uploads"
    import_rejected_rows_kept: int = 1000
    import_background_bytes: int = 5 << 20
    # --- operations (issue 7): backups, /metrics ---
    backup_dir: str = "var/backups"
    backup_keep: int = 14
    backup_max_age_days: int = 30
    metrics_token: str | None = field(default=None, repr=False)
    prometheus_multiproc_dir: str | None = None
    # --- accounts and sessions (issue 4) ---
    session_cache_enabled: bool = True
    session_idle_timeout: int = 8 * 3600
    session_max_age: int = 7 * 24 * 3600
    session_cookie_secure: bool = True
    password_min_length: int = 12
    password_hash_time_cost: int = 3
    password_hash_memory_kib: int = 65536
    login_max_failures_per_account: int = 10
    login_max_failures_per_ip: int = 30
    login_throttle_window: int = 900
    admin_email: str = "admin@example.com"
    admin_password: str | None = field(default=None, repr=False)
    # --- transformations (issue 6) ---
    transform_parallelism: int = field(default_factory=lambda: default_transform_parallelism())

    @property
    def mode(self) -> str:
        return "split" if self.split_db_mode else "single"

    def database(self, side: str) -> DatabaseConfig:
        """The pooled (application) URL of one side: 'primary' or 'data'."""
        if side not in ("primary", "data"):
            raise ValueError(f"unknown database side {side!r}")
        return self.primary if side == "primary" else self.data

    def direct_database(self, side: str) -> DatabaseConfig:
        """The URL for a direct connection to one side (migrate, build, copy, backup): PRIMARY's
        PRIMARY_MIGRATION_URL when set (it bypasses PgBouncer), else the side's own URL."""
        if side == "primary" and self.primary_migration is not None:
            return self.primary_migration
        return self.database(side)


def parse_bool(variable: str, raw: str | None, default: bool) -> bool:
    if raw is None:
        return default
    word = raw.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise SettingsError(f"{variable} must be true or false, not {raw!r}.")


def parse_positive_int(variable: str, raw: str | None, default: int) -> int:
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{variable} must be a whole number of seconds, not {raw!r}.") from None
    if value <= 0:
        raise SettingsError(f"{variable} must be greater than 0, not {value}.")
    return value


def parse_database_url(variable: str, url: str) -> DatabaseConfig:
    """Parse postgresql://user:pass@host:port/db?params into a DatabaseConfig."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise SettingsError(f"{variable} is not a valid URL ({exc}).") from None
    if parts.scheme not in ("postgresql", "postgres"):
        raise SettingsError(
            f"{variable} must start with postgresql:// (got {parts.scheme or 'no scheme'!r})."
        )
    dbname = unquote(parts.path.lstrip("/"))
    if not dbname:
        raise SettingsError(f"{variable} must name a database after the host, e.g. postgresql://localhost/handled.")
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    pool_size = _url_int(variable, params, "connection_limit", DEFAULT_POOL_SIZE)
    pool_timeout = _url_int(variable, params, "pool_timeout", 10)
    pgbouncer = parse_bool(f"{variable} parameter pgbouncer", params.get("pgbouncer"), False)
    libpq = {k: v for k, v in params.items() if k not in APP_URL_PARAMS}
    return DatabaseConfig(
        variable=variable,
        host=parts.hostname,
        port=port,
        dbname=dbname,
        user=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        libpq_params=libpq,
        pool_size=pool_size,
        pool_timeout=pool_timeout,
        pgbouncer=pgbouncer,
    )


def _url_int(variable: str, params: dict, name: str, default: int) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) <= 0:
        raise SettingsError(f"{variable} parameter {name} must be a positive whole number, not {raw!r}.")
    return int(raw)


def _required(env: dict, variable: str, hint: str) -> str:
    value = env.get(variable, "").strip()
    if not value:
        raise SettingsError(f"{variable} is not set; {hint}")
    return value


def load_settings(env: dict | None = None) -> Settings:
    """Validate a mapping of variables (the process environment by default)."""
    env = dict(read_environment() if env is None else env)
    split = parse_bool("SPLIT_DB_MODE", env.get("SPLIT_DB_MODE"), False)
    primary = parse_database_url(
        "PRIMARY_DATABASE_URL",
        _required(env, "PRIMARY_DATABASE_URL", "set it to the PRIMARY database, e.g. postgresql://127.0.0.1:5432/handled."),
    )
    data = _data_database(env, primary, split)
    migration_url = env.get("PRIMARY_MIGRATION_URL", "").strip()
    primary_migration = parse_database_url("PRIMARY_MIGRATION_URL", migration_url) if migration_url else None
    if primary_migration and primary_migration.pgbouncer:
        raise SettingsError("PRIMARY_MIGRATION_URL must be a direct connection, not one through PgBouncer (pgbouncer=true).")
    redis_url = _required(env, "REDIS_URL", "set it to a Redis server, e.g. redis://127.0.0.1:6379/0.")
    if not redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise SettingsError(f"REDIS_URL must start with redis://, rediss:// or unix:// (got {redis_url!r}).")
    secret_key = _required(env, "SECRET_KEY", "set it to a long random string (python -c 'import secrets; print(secrets.token_hex(32))').")
    if len(secret_key) < 16:
        raise SettingsError("SECRET_KEY is too short; use at least 16 random characters.")
    return Settings(
        primary=primary,
        data=data,
        split_db_mode=split,
        redis_url=redis_url,
        secret_key=secret_key,
        log_db_queries=parse_bool("LOG_DB_QUERIES", env.get("LOG_DB_QUERIES"), False),
        session_cache_ttl=parse_positive_int("SESSION_CACHE_TTL", env.get("SESSION_CACHE_TTL"), 30),
        primary_migration=primary_migration,
        **_account_settings(env),
        **_import_settings(env),
        **_ops_settings(env),
        transform_parallelism=_transform_parallelism(env),
    )


MAX_TRANSFORM_PARALLELISM = 16


def default_transform_parallelism() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def _transform_parallelism(env: dict) -> int:
    """TRANSFORM_PARALLELISM: slices (connections) a split transformation builds at once.

    The default is the number of CPU cores here (at most 8): DATA is local to
    the app host in production, and PostgreSQL runs each INSERT ... SELECT on
    one core."""
    raw = env.get("TRANSFORM_PARALLELISM", "").strip()
    if not raw:
        return default_transform_parallelism()
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_TRANSFORM_PARALLELISM:
        raise SettingsError(f"TRANSFORM_PARALLELISM must be a whole number from 1 to {MAX_TRANSFORM_PARALLELISM}, "
                            f"not {raw!r}.")
    return int(raw)


def _ops_settings(env: dict) -> dict:
    """BACKUP_* and METRICS_TOKEN (issue 7)."""
    token = env.get("METRICS_TOKEN", "").strip() or None
    if token is not None and len(token) < 16:
        raise SettingsError("METRICS_TOKEN is too short; use at least 16 random characters (or leave it unset).")
    max_age = env.get("BACKUP_MAX_AGE_DAYS", "").strip()
    if max_age and not max_age.isdigit():
        raise SettingsError(f"BACKUP_MAX_AGE_DAYS must be a whole number of days (0 = no age limit), not {max_age!r}.")
    return dict(
        backup_dir=env.get("BACKUP_DIR", "").strip() or "var/backups",
        backup_keep=_count("BACKUP_KEEP", env.get("BACKUP_KEEP", "").strip(), 14),
        backup_max_age_days=int(max_age) if max_age else 30,
        metrics_token=token,
        prometheus_multiproc_dir=_multiproc_dir(env),
    )


def _count(variable: str, raw: str, default: int) -> int:
    if not raw:
        return default
    if not raw.isdigit() or int(raw) <= 0:
        raise SettingsError(f"{variable} must be a whole number greater than 0, not {raw!r}.")
    return int(raw)


def _multiproc_dir(env: dict) -> str | None:
    """prometheus_client's own variable: set under gunicorn so /metrics sums all workers."""
    folder = env.get("PROMETHEUS_MULTIPROC_DIR", "").strip() or None
    if folder and not Path(folder).is_dir():
        raise SettingsError(f"PROMETHEUS_MULTIPROC_DIR ({folder}) is not an existing folder; create it "
                            "(the gunicorn config empties it at start).")
    return folder


def _import_settings(env: dict) -> dict:
    """IMPORT_* variables: size limits, folders, rejected rows kept (issue 5)."""
    def size(variable: str, default: int) -> int:
        raw = env.get(variable, "").strip()
        if not raw:
            return default
        if not raw.isdigit() or int(raw) <= 0:
            raise SettingsError(f"{variable} must be a positive whole number, not {raw!r}.")
        return int(raw)

    return dict(
        import_max_bytes=size("IMPORT_MAX_BYTES", 1 << 30),
        import_archive_dir=env.get("IMPORT_ARCHIVE_DIR", "").strip() or "var/archive",
        import_upload_dir=env.get("IMPORT_UPLOAD_DIR", "").strip() or "var/uploads",
        import_rejected_rows_kept=size("IMPORT_REJECTED_ROWS_KEPT", 1000),
        import_background_bytes=size("IMPORT_BACKGROUND_BYTES", 5 << 20),
    )


def _account_settings(env: dict) -> dict:
    """Sessions, passwords, login throttling and the first admin (issue 4)."""
    def number(variable: str, default: int) -> int:
        return parse_positive_int(variable, env.get(variable), default)

    idle, max_age = number("SESSION_IDLE_TIMEOUT", 8 * 3600), number("SESSION_MAX_AGE", 7 * 24 * 3600)
    if idle > max_age:
        raise SettingsError(f"SESSION_IDLE_TIMEOUT ({idle}) must not exceed SESSION_MAX_AGE ({max_age}).")
    min_length = number("PASSWORD_MIN_LENGTH", 12)
    if min_length < 8:
        raise SettingsError(f"PASSWORD_MIN_LENGTH must be at least 8, not {min_length}.")
    memory = number("PASSWORD_HASH_MEMORY_KIB", 65536)
    if memory < 64:
        raise SettingsError(f"PASSWORD_HASH_MEMORY_KIB must be at least 64, not {memory}.")
    admin_email = env.get("HANDLED_ADMIN_EMAIL", "").strip() or "admin@example.com"
    if "@" not in admin_email:
        raise SettingsError(f"HANDLED_ADMIN_EMAIL must be an email address, not {admin_email!r}.")
    admin_password = env.get("HANDLED_ADMIN_PASSWORD") or None
    if admin_password is not None and len(admin_password) < min_length:
        raise SettingsError(f"HANDLED_ADMIN_PASSWORD must be at least PASSWORD_MIN_LENGTH ({min_length}) characters.")
    return dict(
        session_cache_enabled=parse_bool("SESSION_CACHE_ENABLED", env.get("SESSION_CACHE_ENABLED"), True),
        session_idle_timeout=idle,
        session_max_age=max_age,
        session_cookie_secure=parse_bool("SESSION_COOKIE_SECURE", env.get("SESSION_COOKIE_SECURE"), True),
        password_min_length=min_length,
        password_hash_time_cost=number("PASSWORD_HASH_TIME_COST", 3),
        password_hash_memory_kib=memory,
        login_max_failures_per_account=number("LOGIN_MAX_FAILURES_PER_ACCOUNT", 10),
        login_max_failures_per_ip=number("LOGIN_MAX_FAILURES_PER_IP", 30),
        login_throttle_window=number("LOGIN_THROTTLE_WINDOW", 900),
        admin_email=admin_email,
        admin_password=admin_password,
    )


def _data_database(env: dict, primary: DatabaseConfig, split: bool) -> DatabaseConfig:
    raw = env.get("DATA_DATABASE_URL", "").strip()
    if not raw:
        if split:
            raise SettingsError("DATA_DATABASE_URL is not set; SPLIT_DB_MODE=true needs a separate DATA database URL.")
        return DatabaseConfig(**{**primary.__dict__, "variable": "DATA_DATABASE_URL"})
    data = parse_database_url("DATA_DATABASE_URL", raw)
    same = data.identity == primary.identity
    if split and same:
        raise SettingsError(
            "DATA_DATABASE_URL names the same database as PRIMARY_DATABASE_URL "
            f"({data.display()}) but SPLIT_DB_MODE=true; point it at another database or set SPLIT_DB_MODE=false."
        )
    if not split and not same:
        raise SettingsError(
            f"DATA_DATABASE_URL ({data.display()}) differs from PRIMARY_DATABASE_URL ({primary.display()}) "
            "but SPLIT_DB_MODE=false; use one database for both or set SPLIT_DB_MODE=true."
        )
    return data


def read_environment(env_file: str | os.PathLike = ".env") -> dict:
    """The process environment over the values of a .env file, if one exists."""
    values: dict = {}
    path = Path(env_file)
    if path.is_file():
        from dotenv import dotenv_values

        values.update({k: v for k, v in dotenv_values(path).items() if v is not None})
    values.update(os.environ)
    return values


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this process, read once."""
    return load_settings()
