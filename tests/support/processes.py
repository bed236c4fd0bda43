"""Real processes in tests: a free loopback port, and the venv's `flask` command as a user runs it."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

FLASK = str(Path(sys.executable).with_name("flask"))  # the flask command of the venv running the tests


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_flask(*args: str, env: dict, cwd, timeout: float = 120) -> subprocess.CompletedProcess:
    """`flask <args>` run to its end in ``cwd`` with exactly ``env``; output captured as text."""
    return subprocess.run([FLASK, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def start_flask(*args: str, env: dict, cwd, **popen) -> subprocess.Popen:
    """`flask <args>` started in the background (a worker, or two migrators at once)."""
    return subprocess.Popen([FLASK, *args], cwd=cwd, env=env, **popen)
