"""Real processes in tests: a free loopback port, and the venv's `flask` command as a user runs it."""

from __future__ import annotations

import random
import socket
import subprocess
import sys
from pathlib import Path

from tests.support.environment import WORKER, WORKER_INDEX

FLASK = str(Path(sys.executable).with_name("flask"))  # the flask command of the venv running the tests


def free_port() -> int:
    """A loopback port nothing listens on. Under pytest-xdist each test process picks from a
    range of its own (below Linux's ephemeral ports), so two processes starting servers at
    the same moment never get the same port."""
    if not WORKER:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]
    first = 20000 + 1500 * WORKER_INDEX
    for port in random.sample(range(first, first + 1500), 1500):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free loopback port in {first}-{first + 1499} for test process {WORKER}")


def run_flask(*args: str, env: dict, cwd, timeout: float = 120) -> subprocess.CompletedProcess:
    """`flask <args>` run to its end in ``cwd`` with exactly ``env``; output captured as text."""
    return subprocess.run([FLASK, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def start_flask(*args: str, env: dict, cwd, **popen) -> subprocess.Popen:
    """`flask <args>` started in the background (a worker, or two migrators at once)."""
    return subprocess.Popen([FLASK, *args], cwd=cwd, env=env, **popen)
