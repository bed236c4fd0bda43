"""Every environment variable handled reads: one table, validated in one place.

Nothing else in the project reads ``os.environ``. ``SECTIONS`` below is the
table: each variable's name, parser, default (stated here and nowhere else),
unit and help text, grouped by concern. ``load_settings()`` turns a mapping (the
environment merged over an optional ``.env`` file) into a frozen ``Settings``;
a missing or contradictory value raises ``SettingsError`` with one sentence that
names the variable, so start-up can stop cleanly. ``.env.example`` is rendered
from the same table: ``python -m handled.settings > .env.example``.
"""

from __future__ import annotations

import os
import re
import sys
import textwrap
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from handled.settings_parsers import (
    COUNT, DEFAULT_POOL_SIZE, DEFAULT_POOL_TIMEOUT, OLDEST_SERVER_VERSION, DatabaseConfig, Required, Section,
    ServerVersion, SettingsError, Variable, boolean, command_line, database_url, direct_database_url, email,
    existing_folder, parse_database_url, redis_url, redact_url, secret, server_version, text, verbatim, whole,
)

__all__ = ["DatabaseConfig", "Settings", "SettingsError", "SECTIONS", "default_transform_parallelism",
           "get_settings", "load_settings", "parse_database_url", "read_environment", "render_env_example"]

MAX_TRANSFORM_PARALLELISM = 16


def default_transform_parallelism() -> int:
    """One less than the CPU cores here (at least 1, at most 8): DATA is local to the app host in
    production, PostgreSQL runs each INSERT ... SELECT on one core, and the core left over keeps
    the pages and their queries answering while a rebuild runs (docs/TRANSFORMATIONS.md)."""
    return max(1, min(8, (os.cpu_count() or 1) - 1))


SECTIONS: tuple[Section, ...] = (
    Section("Databases", (
        "PRIMARY holds config + customer (users, sessions, roles, audit, run history, organisations, "
        "facilities): small and irreplaceable. DATA holds workspace + reference (imported files, "
        "derived tables): big, rebuildable.\n"
        "Development uses one database for all four schemas (single mode). Production splits them: "
        "PRIMARY on a managed server behind PgBouncer with TLS, DATA on the application host:\n"
        "  SPLIT_DB_MODE=true\n"
        "  PRIMARY_DATABASE_URL=postgresql://handled:PASSWORD@primary.internal:6432/handled"
        "?sslmode=require&connection_limit=10&pgbouncer=true\n"
        "  DATA_DATABASE_URL=postgresql://handled@127.0.0.1:5432/handled_data?connection_limit=10\n"
        "  PRIMARY_MIGRATION_URL=postgresql://handled:PASSWORD@primary.internal:5432/handled?sslmode=require\n"
        "URL parameters: any libpq parameter (sslmode, sslrootcert, connect_timeout, application_name, "
        "...) is passed to libpq. handled's own:\n"
        f"  connection_limit=N  pool size per process (default {DEFAULT_POOL_SIZE})\n"
        f"  pool_timeout=S      seconds to wait for a free pooled connection (default {DEFAULT_POOL_TIMEOUT})\n"
        "  pgbouncer=true      behind a transaction pooler: no session state is used, and migrations "
        "refuse this URL"), (
        Variable("SPLIT_DB_MODE", boolean, False,
                 "true: PRIMARY and DATA are two databases; false: one database holds both."),
        Variable("PRIMARY_DATABASE_URL", database_url, Required(
            "set it to the PRIMARY database, e.g. postgresql://127.0.0.1:5432/handled.",
            "postgresql://postgres@127.0.0.1:5432/handled"),
            "The PRIMARY database (config + customer).", attribute="primary"),
        Variable("DATA_DATABASE_URL", database_url, None,
                 "The DATA database (workspace + reference). Single mode: leave it out (it is PRIMARY's) "
                 "or name the same database. Split mode: required, and another database.",
                 attribute="data"),
        Variable("PRIMARY_MIGRATION_URL", direct_database_url, None,
                 "A direct connection to PRIMARY for migrations, copies and backups, when "
                 "PRIMARY_DATABASE_URL goes through PgBouncer (its transaction pooling breaks them).",
                 attribute="primary_migration"),
        Variable("DATA_MIGRATION_URL", direct_database_url, None,
                 "A direct connection to DATA as its owner role, for migrations, copies, backups and prune "
                 "(split mode; single mode uses PRIMARY_MIGRATION_URL). `flask db create-roles` prints it.",
                 attribute="data_migration"),
        Variable("DATA_BUILD_URL", direct_database_url, None,
                 "A direct connection to DATA as the builder role: transformation builds create and swap "
                 "their own reference tables with it and nothing else. Unset: the DATA direct URL. "
                 "`flask db create-roles` prints it.", attribute="data_build"),
        Variable("DB_ADMIN_URL", database_url, None,
                 "Only for `flask db create-roles`: a role allowed to create roles and own the handled "
                 "databases (a superuser, or the managed service's admin). Its database name is ignored; "
                 "set it for that one command, never in the app's environment file.", attribute="db_admin"),
        Variable("DB_OWNER_PASSWORD", secret(16), None,
                 "create-roles: the owner role's password. Unset: a new role gets a generated one, "
                 "printed once; an existing role keeps its own.", attribute="db_owner_password"),
        Variable("DB_RUNTIME_PASSWORD", secret(16), None,
                 "create-roles: the runtime role's password (same rules).", attribute="db_runtime_password"),
        Variable("DB_BUILD_PASSWORD", secret(16), None,
                 "create-roles: the builder role's password (same rules).", attribute="db_build_password"),
        Variable("DB_MIN_SERVER_VERSION", server_version, ServerVersion(OLDEST_SERVER_VERSION),
                 "The oldest PostgreSQL release `flask db check` accepts for each database, e.g. 16 or 16.4. "
                 "Default: the oldest handled runs on; set it to hold every database to your own minimum "
                 "(a managed provider's supported releases). A lower value than the default is refused.",
                 attribute="db_min_server_version"),
        Variable("LOG_DB_QUERIES", boolean, False,
                 "Log every SQL statement with its database (primary/data) and duration. Errors and "
                 "warnings are always logged."),
    )),
    Section("Redis", "Session cache, sign-in throttle and the job queue, shared by every worker.", (
        Variable("REDIS_URL", redis_url, Required("set it to a Redis server, e.g. redis://127.0.0.1:6379/0.",
                                                  "redis://127.0.0.1:6379/0"),
                 "The Redis server (redis://, rediss:// or unix://) of the session cache, sign-in throttle "
                 "and metrics. Production: a password or ACL user in the URL "
                 "(redis://handled:PASSWORD@redis.internal:6379/0) and TLS across hosts "
                 "(rediss://handled:PASSWORD@redis.internal:6380/0?ssl_ca_certs=/etc/handled/redis-ca.pem). "
                 "Shown redacted everywhere."),
        Variable("JOBS_REDIS_URL", redis_url, None,
                 "The Redis server (or database) of the job queue. Unset: REDIS_URL. Another database or "
                 "server keeps queued jobs apart from the session cache (e.g. redis://...:6379/1)."),
    )),
    Section("Sessions and accounts", "See docs/SESSIONS.md.", (
        Variable("SECRET_KEY", secret(16), Required(
            "set it to a long random string (python -c 'import secrets; print(secrets.token_hex(32))').",
            "change-me-to-a-long-random-string"),
            "Signs cookies and CSRF tokens. Long and random; never commit a real one:\n"
            "  python -c 'import secrets; print(secrets.token_hex(32))'"),
        Variable("SESSION_CACHE_TTL", whole(), 30, "How long a checked session stays in the shared Redis cache.",
                 "seconds"),
        Variable("SESSION_CACHE_ENABLED", boolean, True,
                 "false: every request checks its session in PRIMARY (benchmarks, debugging)."),
        Variable("SESSION_IDLE_TIMEOUT", whole(), 8 * 3600,
                 "A session ends after this long unused (at most SESSION_MAX_AGE).", "seconds"),
        Variable("SESSION_MAX_AGE", whole(), 7 * 24 * 3600, "A session ends this long after sign-in.", "seconds"),
        Variable("SESSION_COOKIE_SECURE", boolean, True,
                 "Send the session cookie over HTTPS only. Set false only for local plain http "
                 "(scripts/run and the tests do)."),
        Variable("PASSWORD_MIN_LENGTH", whole(8), 12, "The shortest password accepted.", "characters"),
        Variable("PASSWORD_HASH_TIME_COST", whole(), 3,
                 "argon2id passes per hash (raising the cost rehashes at next sign-in).", COUNT),
        Variable("PASSWORD_HASH_MEMORY_KIB", whole(64), 65536,
                 "argon2id memory per hash (raising the cost rehashes at next sign-in).", "KiB"),
        Variable("HANDLED_ADMIN_EMAIL", email, "admin@example.com",
                 "The first administrator, created by `flask users ensure-admin` (scripts/run) when no "
                 "active admin exists.", attribute="admin_email"),
        Variable("HANDLED_ADMIN_PASSWORD", verbatim, None,
                 "Its password (at least PASSWORD_MIN_LENGTH characters). Unset: one is generated, "
                 "printed once, and must be changed at first sign-in.", attribute="admin_password"),
    )),
    Section("Sign-in throttle", "Failed sign-ins allowed within a window, counted in Redis (in PRIMARY while "
            "Redis is down); see docs/SESSIONS.md.", (
        Variable("LOGIN_MAX_FAILURES_PER_ACCOUNT", whole(), 10,
                 "Failed sign-ins allowed per email from one client address (other addresses are not "
                 "affected).", COUNT),
        Variable("LOGIN_MAX_FAILURES_PER_IP", whole(), 30, "Failed sign-ins allowed per client address.", COUNT),
        Variable("LOGIN_ACCOUNT_DELAY_AFTER", whole(), 20,
                 "Failed sign-ins per email from any addresses after which each further attempt on it waits "
                 "a delay that doubles (1 s, 2 s, 4 s, ...) up to LOGIN_ACCOUNT_DELAY_MAX; never a hard lock.",
                 COUNT),
        Variable("LOGIN_ACCOUNT_DELAY_MAX", whole(), 60, "The longest delay between attempts on one email.",
                 "seconds"),
        Variable("LOGIN_THROTTLE_WINDOW", whole(), 900, "The window the failures are counted in.", "seconds"),
        Variable("TRUSTED_PROXY_HOPS", whole(0), 0,
                 "Proxies in front of the app that append the client address to X-Forwarded-For (the "
                 "documented nginx: 1). The client address (throttle, sessions, audit log, /system) is taken "
                 "that many entries from the right; 0 ignores the header (no proxy, or one you do not trust).",
                 COUNT),
    )),
    Section("Imports", "flask integrations ..., /integrations; see docs/IMPORTS.md.", (
        Variable("IMPORT_MAX_BYTES", whole(), 1 << 30, "Largest file an import accepts (1 GiB).", "bytes"),
        Variable("IMPORT_ARCHIVE_DIR", text, "var/archive",
                 "Every imported file is kept here by sha256, so the DATA database can be rebuilt from the "
                 "archive plus the run history. Back this folder up."),
        Variable("IMPORT_UPLOAD_DIR", text, "var/uploads", "Uploaded files wait here until their import has run."),
        Variable("IMPORT_REJECTED_ROWS_KEPT", whole(), 1000,
                 "How many rejected rows (line, column, value, reason) a run keeps; the total is always "
                 "counted.", COUNT),
        Variable("IMPORT_BACKGROUND_BYTES", whole(), 5 << 20,
                 "Uploads larger than this run in the background job queue; smaller ones run in the "
                 "request.", "bytes"),
        Variable("IMPORT_SHEET_MAX_CELLS", whole(), 200_000,
                 "A spreadsheet whose sheet declares or reaches more cells than this (rows x columns from "
                 "A1) is refused before it is read: a UPS zone chart has about 7,000.", COUNT),
        Variable("IMPORT_ZIP_MAX_FILES", whole(), 2000,
                 "A .zip upload (or .xlsx container) holding more files than this is refused.", COUNT),
        Variable("IMPORT_ZIP_MAX_BYTES", whole(), 4 << 30,
                 "A .zip upload (or .xlsx container) expanding to more than this in total is refused "
                 "(4 GiB); so is one expanding more than 100 times its size.", "bytes"),
        Variable("MAX_UPLOAD_MB", whole(), 128,
                 "Largest request body the upload page accepts (the largest real source file, the USPS "
                 "directory, is about 40 MB); every other page accepts 64 KiB. Larger files: flask "
                 "integrations import on the server.", "MB"),
    )),
    Section("Transformations", "flask transformations ..., docs/TRANSFORMATIONS.md.", (
        Variable("TRANSFORM_PARALLELISM", whole(1, MAX_TRANSFORM_PARALLELISM), default_transform_parallelism,
                 f"Slices of delivery-matrix built side by side, one DATA connection each (1-"
                 f"{MAX_TRANSFORM_PARALLELISM}); a build uses at most this many cores. Default: the CPU "
                 "cores here less one (at least 1, at most 8), leaving readers a core.", COUNT),
    )),
    Section("Exports", "/exports and flask exports ...; see docs/TRANSFORMATIONS.md.", (
        Variable("EXPORT_STREAMS_PER_USER", whole(), 2,
                 "Downloads one user may have running at once (each holds a DATA connection while it "
                 "streams); counted in Redis.", COUNT),
    )),
    Section("Backups", "flask backup ...; see docs/OPS_RUNBOOK.md.", (
        Variable("BACKUP_DIR", text, "var/backups",
                 "Where `flask backup create` writes its pg_dump files, its import archive backups and their "
                 "JSON manifests."),
        Variable("BACKUP_KEEP", whole(), 14,
                 "Keep at most this many backups per target (primary, data, archive) ... An archive backup "
                 "that a kept one still needs (it holds files the kept one lists) is kept too.", COUNT),
        Variable("BACKUP_MAX_AGE_DAYS", whole(0, zero_means="no age limit"), 30,
                 "... and none older than this (0 = no age limit). The backup just made is never deleted.",
                 "days"),
        Variable("BACKUP_ENCRYPTION_PASSPHRASE", secret(16), None,
                 "Set: backups are encrypted with gpg (AES256, symmetric) with this passphrase, and restores "
                 "decrypt with it. Keep a copy away from the backups: without it they cannot be restored.",
                 attribute="backup_encryption_passphrase"),
        Variable("BACKUP_COPY_COMMAND", command_line, None,
                 "A command run after each backup, once per file written (the backup, then its manifest), "
                 "to copy it off this host; the word {file} is replaced by the file's path, else the path "
                 "is added as the last word. Split into words like a shell would, but never run through "
                 "one. Its failure fails the backup's run (shown on /system; "
                 "handled_backup_last_success_timestamp_seconds stays put). It gets this environment "
                 "without handled's own variables. Examples:\n"
                 "  rclone copy {file} offsite:handled-backups\n"
                 "  aws s3 cp {file} s3://example-backups/handled/",
                 attribute="backup_copy_command"),
        Variable("BACKUP_COPY_TIMEOUT", whole(), 3600,
                 "BACKUP_COPY_COMMAND is stopped (and the backup's run failed) after this long.", "seconds"),
        Variable("BACKUP_VERIFY_URL", direct_database_url, None,
                 "Where `flask backup verify` restores a backup to check it: a direct URL to a maintenance "
                 "database (e.g. postgres) on a server whose role may CREATEDB. It creates a scratch "
                 "database there named <the backed-up database>_verify_<random>, and always drops it. "
                 "Unset: DATA's direct URL's server and role.", attribute="backup_verify"),
    )),
    Section("Metrics", "/metrics and the System page; see docs/OPS_RUNBOOK.md.", (
        Variable("METRICS_TOKEN", secret(16), None,
                 'Prometheus scrapes /metrics with "Authorization: Bearer <METRICS_TOKEN>" (at least 16 '
                 "random characters). Unset: only signed-in users with view_system may read /metrics."),
        Variable("PROMETHEUS_MULTIPROC_DIR", existing_folder("the gunicorn config empties it at start"), None,
                 "prometheus_client's own variable. Under gunicorn with several workers, point it at an "
                 "existing empty folder writable by the app (e.g. /run/handled/metrics) so /metrics adds "
                 "up every worker's counters."),
    )),
)


def variables() -> list[Variable]:
    return [var for section in SECTIONS for var in section.variables]


@dataclass(frozen=True)
class Settings:
    """The validated settings; every default lives in ``SECTIONS``, none here."""

    # databases
    primary: DatabaseConfig
    data: DatabaseConfig
    split_db_mode: bool
    primary_migration: DatabaseConfig | None
    data_migration: DatabaseConfig | None
    data_build: DatabaseConfig | None
    db_admin: DatabaseConfig | None = field(repr=False)
    db_owner_password: str | None = field(repr=False)
    db_runtime_password: str | None = field(repr=False)
    db_build_password: str | None = field(repr=False)
    db_min_server_version: ServerVersion
    log_db_queries: bool
    # Redis
    redis_url: str = field(repr=False)  # may hold a password: shown only through cache.display_url
    jobs_redis_url: str | None = field(repr=False)
    # sessions and accounts
    secret_key: str = field(repr=False)
    session_cache_ttl: int
    session_cache_enabled: bool
    session_idle_timeout: int
    session_max_age: int
    session_cookie_secure: bool
    password_min_length: int
    password_hash_time_cost: int
    password_hash_memory_kib: int
    admin_email: str
    admin_password: str | None = field(repr=False)
    # sign-in throttle
    login_max_failures_per_account: int
    login_max_failures_per_ip: int
    login_account_delay_after: int
    login_account_delay_max: int
    login_throttle_window: int
    trusted_proxy_hops: int
    # imports
    import_max_bytes: int
    import_archive_dir: str
    import_upload_dir: str
    import_rejected_rows_kept: int
    import_background_bytes: int
    import_sheet_max_cells: int
    import_zip_max_files: int
    import_zip_max_bytes: int
    max_upload_mb: int
    # transformations
    transform_parallelism: int
    # exports
    export_streams_per_user: int
    # backups
    backup_dir: str
    backup_keep: int
    backup_max_age_days: int
    backup_encryption_passphrase: str | None = field(repr=False)
    backup_copy_command: tuple[str, ...] | None = field(repr=False)  # its words may hold a credential
    backup_copy_timeout: int
    backup_verify: DatabaseConfig | None
    # metrics
    metrics_token: str | None = field(repr=False)
    prometheus_multiproc_dir: str | None

    @property
    def mode(self) -> str:
        return "split" if self.split_db_mode else "single"

    def database(self, side: str) -> DatabaseConfig:
        """The pooled (application) URL of one side: 'primary' or 'data'."""
        if side not in ("primary", "data"):
            raise ValueError(f"unknown database side {side!r}")
        return self.primary if side == "primary" else self.data

    def direct_database(self, side: str) -> DatabaseConfig:
        """The owner's direct connection to one side (migrate, copy, backup, prune): PRIMARY's
        PRIMARY_MIGRATION_URL, DATA's DATA_MIGRATION_URL (in single mode PRIMARY_MIGRATION_URL, one
        database), when set; else the side's own URL."""
        if side == "data" and not self.split_db_mode:
            return self.direct_database("primary") if self.primary_migration is not None else self.data
        if side == "primary" and self.primary_migration is not None:
            return self.primary_migration
        if side == "data" and self.data_migration is not None:
            return self.data_migration
        return self.database(side)

    def build_database(self) -> DatabaseConfig:
        """The builder's direct connection to DATA (transformation builds): DATA_BUILD_URL when set,
        else the owner's direct DATA URL."""
        return self.data_build if self.data_build is not None else self.direct_database("data")


def load_settings(env: dict | None = None) -> Settings:
    """Validate a mapping of variables (the process environment by default)."""
    env = dict(read_environment() if env is None else env)
    values = {var.field: _value(var, env.get(var.name)) for var in variables()}
    values["data"] = _data_database(values["data"], values["primary"], values["split_db_mode"])
    for other in (values["data_migration"], values["data_build"]):
        if other is not None and other.dbname != values["data"].dbname:
            raise SettingsError(f"{other.variable} names the database {other.dbname!r} but DATA is "
                                f"{values['data'].dbname!r}; point it at the DATA database.")
    _check_sessions(values)
    return Settings(**values)


def _value(var: Variable, raw: str | None):
    """One variable's value: an empty value is the same as an unset one."""
    if raw is None or not raw.strip():
        if var.required:
            raise SettingsError(f"{var.name} is not set; {var.default.hint}")
        return var.default() if callable(var.default) else var.default
    return var.parse(raw, var)


def _check_sessions(values: dict) -> None:
    """Rules between variables of sessions and accounts."""
    idle, max_age = values["session_idle_timeout"], values["session_max_age"]
    if idle > max_age:
        raise SettingsError(f"SESSION_IDLE_TIMEOUT ({idle}) must not exceed SESSION_MAX_AGE ({max_age}).")
    min_length, admin_password = values["password_min_length"], values["admin_password"]
    if admin_password is not None and len(admin_password) < min_length:
        raise SettingsError(f"HANDLED_ADMIN_PASSWORD must be at least PASSWORD_MIN_LENGTH ({min_length}) characters.")


def _data_database(data: DatabaseConfig | None, primary: DatabaseConfig, split: bool) -> DatabaseConfig:
    """DATA_DATABASE_URL against SPLIT_DB_MODE: another database when split, the same one when not."""
    if data is None:
        if split:
            raise SettingsError("DATA_DATABASE_URL is not set; SPLIT_DB_MODE=true needs a separate DATA database URL.")
        return DatabaseConfig(**{**primary.__dict__, "variable": "DATA_DATABASE_URL"})
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


ENV_EXAMPLE_HEADER = (
    "handled reads its settings from the environment, and from a .env file in the working directory when "
    "one exists (the environment wins). Copy this file to .env for local development; in production set "
    "the variables in the service manager (systemd EnvironmentFile=) and keep secrets out of the "
    "repository. An empty value is the same as leaving the variable unset; a commented-out line shows the "
    "default.\n"
    "Generated from the table in handled/settings.py: edit the table, not this file, then run\n"
    "  python -m handled.settings > .env.example"
)


def render_env_example() -> str:
    """.env.example: each section a comment header, each variable its help, unit and default."""
    lines = _comment(ENV_EXAMPLE_HEADER)
    for section in SECTIONS:
        lines += ["", f"# --- {section.title} ".ljust(79, "-"), *_comment(section.about)]
        for var in section.variables:
            lines += ["", *_comment(var.help)]
            if var.unit:
                lines.append(f"# Unit: {var.unit}.")
            lines.append(_assignment(var))
    return "\n".join(lines) + "\n"


def _assignment(var: Variable) -> str:
    if var.required:
        return f"{var.name}={var.default.example}"
    if var.default is None or callable(var.default):
        return f"# {var.name}="
    shown = str(var.default).lower() if isinstance(var.default, bool) else str(var.default)
    return f"# {var.name}={shown}"


def _comment(text: str) -> list[str]:
    """Comment lines; each line of ``text`` is wrapped on its own, keeping its indent."""
    lines = []
    for line in text.split("\n"):
        indent = line[:len(line) - len(line.lstrip())]
        term = re.match(r"\s+\S+\s{2,}", line)  # "  key=value  what it does": align under "what"
        hanging = " " * term.end() if term else indent
        parts = textwrap.wrap(line.strip(), 77, initial_indent=indent, subsequent_indent=hanging,
                              break_long_words=False, break_on_hyphens=False)
        lines += [f"# {part}" for part in parts] or ["#"]
    return lines


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


if __name__ == "__main__":
    sys.stdout.write(render_env_example())
