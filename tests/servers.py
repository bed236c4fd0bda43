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
import time
from pathlib import Path

import psycopg2
import redis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
        conn = psycopg2.connect(self.url())
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        conn.close()


class PrivateRedis:
    """A throwaway redis-server on a free port, nothing kept on disk."""

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
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if redis.Redis(port=self.port, socket_connect_timeout=0.2).ping():
                    return self
            except redis.RedisError:
                time.sleep(0.05)
        raise RuntimeError("private redis-server did not start")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
