"""Private PostgreSQL and Redis servers that a test may stop or reconfigure.

Each runs from the locally installed server binaries in a temporary folder, on a
free loopback port, and is stopped by the test that started it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import redis

from tests.support.databases import connect, db_url
from tests.support.processes import free_port
from tests.support.waiting import wait_until


def pg_bindir() -> Path:
    out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def _run_as_postgres_if_root(cmd: list[str], **kwargs):
    """initdb and postgres refuse to run as root: run them as the postgres user."""
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kwargs)


class PrivatePostgres:
    """A throwaway PostgreSQL cluster on a free port (trust auth, superuser postgres)."""

    def __init__(self, base: Path | None = None, ssl_files: tuple[Path, Path] | None = None):
        # Its own folder straight under /tmp: pytest's tmp_path is private to root,
        # and the server runs as the postgres user.
        self.base = Path(tempfile.mkdtemp(prefix="handled-pg-"))
        self.datadir = self.base / "pgdata"
        self.port = free_port()
        self.ssl_files = ssl_files
        self.bindir = pg_bindir()

    def url(self, dbname: str = "postgres", **params) -> str:
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}" + (f"?{query}" if query else "")

    def init(self) -> "PrivatePostgres":
        if os.geteuid() == 0:
            shutil.chown(self.base, "postgres", "postgres")
        _run_as_postgres_if_root([str(self.bindir / "initdb"), "-D", str(self.datadir), "-U", "postgres",
                                  "--auth=trust", "--no-sync", "-E", "UTF8"])
        conf = [f"port = {self.port}", "listen_addresses = '127.0.0.1'",
                f"unix_socket_directories = '{self.base}'", "fsync = off", "max_connections = 50"]
        if self.ssl_files:
            conf += ["ssl = on", f"ssl_cert_file = '{self.ssl_files[0]}'", f"ssl_key_file = '{self.ssl_files[1]}'"]
        with open(self.datadir / "postgresql.conf", "a") as handle:
            handle.write("\n".join(conf) + "\n")
        return self

    def start(self) -> "PrivatePostgres":
        _run_as_postgres_if_root([str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-w", "-t", "30",
                                  "-l", str(self.base / "server.log"), "start"])
        return self

    def stop(self) -> None:
        if (self.datadir / "postmaster.pid").exists():
            _run_as_postgres_if_root([str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "immediate",
                                      "-w", "stop"])

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    def createdb(self, name: str) -> None:
        conn = connect(self.url())
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        conn.close()


class PrivateRedis:
    """A throwaway redis-server on a free port. Nothing is saved on its own; ``save()`` writes a
    snapshot (dump.rdb in its folder), which the next ``start()`` loads, as a Redis restarted
    from its saved data does."""

    def __init__(self, base: Path):
        self.base = Path(base)
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "PrivateRedis":
        self.base.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.base)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self._answers, timeout=10, message="the private redis-server to start")
        return self

    def _answers(self) -> bool:
        try:
            return redis.Redis(port=self.port, socket_connect_timeout=0.2).ping()
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5)

    def save(self) -> None:
        """A snapshot of what it holds now (SAVE: dump.rdb, loaded by the next start)."""
        client = self.client()
        client.save()
        client.close()

    def crash_and_restart(self) -> None:
        """Killed (SIGKILL, even while stopped by SIGSTOP: what it had not saved is lost), then
        started again on the same port from its last snapshot."""
        self.stop()
        self.start()


# --- PgBouncer and TLS --------------------------------------

def _owned_by_postgres(path: Path, mode: int) -> None:
    path.chmod(mode)
    if os.geteuid() == 0:
        shutil.chown(path, "postgres", "postgres")


def self_signed_certificate(folder: Path | None = None, common_name: str = "127.0.0.1") -> tuple[Path, Path]:
    """(cert, key) made with openssl req -x509; the key is the postgres user's, mode 0600,
    as PostgreSQL and PgBouncer require."""
    folder = Path(folder or tempfile.mkdtemp(prefix="handled-tls-"))
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    cert, key = folder / "server.crt", folder / "server.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", f"/CN={common_name}", "-addext", f"subjectAltName=IP:{common_name}",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    _owned_by_postgres(cert, 0o644)
    _owned_by_postgres(key, 0o600)
    return cert, key


class CertificateAuthority:
    """A test CA made with openssl: ``cert`` is what a client names in sslrootcert, and ``issue``
    signs server certificates for the names given (IP:127.0.0.1, DNS:localhost, ...)."""

    def __init__(self, folder: Path | None = None, name: str = "handled test CA"):
        self.folder = Path(folder or tempfile.mkdtemp(prefix="handled-ca-"))
        self.folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
        self.cert, self.key = self.folder / "ca.crt", self.folder / "ca.key"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
                        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign",
                        "-keyout", str(self.key), "-out", str(self.cert)], check=True, capture_output=True)
        self.cert.chmod(0o644)

    def issue(self, common_name: str, names: list[str], stem: str = "server") -> tuple[Path, Path]:
        """(cert, key) for a server known by ``names`` (subjectAltName entries), signed by this CA;
        the key is the postgres user's, mode 0600."""
        cert, key, request = (self.folder / f"{stem}.crt", self.folder / f"{stem}.key", self.folder / f"{stem}.csr")
        extensions = self.folder / f"{stem}.ext"
        extensions.write_text(f"subjectAltName={','.join(names)}\nextendedKeyUsage=serverAuth\n")
        subprocess.run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={common_name}",
                        "-keyout", str(key), "-out", str(request)], check=True, capture_output=True)
        subprocess.run(["openssl", "x509", "-req", "-in", str(request), "-CA", str(self.cert), "-CAkey", str(self.key),
                        "-CAcreateserial", "-days", "2", "-extfile", str(extensions), "-out", str(cert)],
                       check=True, capture_output=True)
        _owned_by_postgres(cert, 0o644)
        _owned_by_postgres(key, 0o600)
        return cert, key

    def destroy(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


class PrivatePgBouncer:
    """A PgBouncer (Debian package) on a free loopback port in transaction pooling mode,
    forwarding every database name to one PostgreSQL server. Trust auth for the users
    given; ``admin_url`` opens its console (SHOW POOLS / SHOW STATS)."""

    def __init__(self, server_port: int, pool_size: int = 3, users=("postgres",),
                 client_tls: tuple[Path, Path] | None = None, server_tls: bool = False,
                 server_host: str = "127.0.0.1"):
        self.base = Path(tempfile.mkdtemp(prefix="handled-pgbouncer-"))
        self.port = free_port()
        self.server_host, self.server_port = server_host, server_port
        self.pool_size = pool_size
        self.users = users
        self.client_tls = client_tls
        self.server_tls = server_tls
        self.process: subprocess.Popen | None = None

    def url(self, dbname: str, **params) -> str:
        params = {"pgbouncer": "true", **params}
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}?{query}"

    def admin_url(self) -> str:
        tls = "?sslmode=require" if self.client_tls else ""
        return f"postgresql://postgres@127.0.0.1:{self.port}/pgbouncer{tls}"

    def _config(self) -> str:
        lines = ["[databases]", f"* = host={self.server_host} port={self.server_port}", "", "[pgbouncer]",
                 "listen_addr = 127.0.0.1", f"listen_port = {self.port}", "unix_socket_dir =",
                 "auth_type = trust", f"auth_file = {self.base / 'users.txt'}", "admin_users = postgres",
                 "pool_mode = transaction", f"default_pool_size = {self.pool_size}", "min_pool_size = 0",
                 "reserve_pool_size = 0", f"max_db_connections = {self.pool_size}", "max_client_conn = 500",
                 "ignore_startup_parameters = extra_float_digits,options",
                 # after a failed login to the server (PRIMARY restarting) ask again in 1 s, not the
                 # default 15 s during which every client is refused (docs/DEPLOYMENT_CHECKLIST.md)
                 "server_login_retry = 1",
                 f"logfile = {self.base / 'pgbouncer.log'}", f"pidfile = {self.base / 'pgbouncer.pid'}"]
        if self.client_tls:
            lines += ["client_tls_sslmode = require", f"client_tls_cert_file = {self.client_tls[0]}",
                      f"client_tls_key_file = {self.client_tls[1]}"]
        if self.server_tls:
            lines += ["server_tls_sslmode = require"]
        return "\n".join(lines) + "\n"

    def start(self) -> "PrivatePgBouncer":
        (self.base / "users.txt").write_text("".join(f'"{u}" ""\n' for u in self.users))
        (self.base / "pgbouncer.ini").write_text(self._config())
        binary = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/usr/bin")
        if binary is None:
            raise RuntimeError("pgbouncer is not installed; scripts/test installs it (apt-get install pgbouncer).")
        cmd = [binary, str(self.base / "pgbouncer.ini")]
        if os.geteuid() == 0:  # pgbouncer refuses to run as root
            shutil.chown(self.base, "postgres", "postgres")
            for child in self.base.iterdir():
                shutil.chown(child, "postgres", "postgres")
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        self.process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True)
        wait_until(self._listens, timeout=10, message="pgbouncer to start")
        return self

    def _listens(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return True
        except OSError:
            if self.process.poll() is not None:
                raise RuntimeError(f"pgbouncer did not start: {self.log()[-2000:]}") from None
            return False

    def log(self) -> str:
        path = self.base / "pgbouncer.log"
        return path.read_text() if path.exists() else ""

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, 9)
            self.process.wait(10)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)


def through_pgbouncer(settings, bouncer: PrivatePgBouncer, **params):
    """The same settings with PRIMARY (and, in single mode, DATA: one URL) through ``bouncer``;
    migrations keep the direct URL as PRIMARY_MIGRATION_URL."""
    from dataclasses import replace

    from handled.settings import DatabaseConfig, parse_database_url

    direct = settings.primary_migration or parse_database_url("PRIMARY_MIGRATION_URL", db_url(settings.primary.dbname))
    primary = parse_database_url("PRIMARY_DATABASE_URL", bouncer.url(settings.primary.dbname, **params))
    if settings.primary.user:   # the runtime role through the pooler (it must be in the bouncer's users)
        primary = replace(primary, user=settings.primary.user)
    data = settings.data if settings.split_db_mode else DatabaseConfig(**{**primary.__dict__,
                                                                          "variable": "DATA_DATABASE_URL"})
    return replace(settings, primary=primary, data=data, primary_migration=direct)
