"""Which process is running a job or transformation, and whether it is still alive.

A runner is ``<host>:<pid>``. While it works it refreshes a Redis key with a
short TTL; a run row whose runner is gone (its key expired, or on this host its
process no longer exists) belongs to a worker that died and may be marked failed.
"""

from __future__ import annotations

import logging
import os
import socket
import threading

import redis

from handled.cache import get_redis

log = logging.getLogger("handled.heartbeat")

KEY = "handled:runner:{}"
TTL_SECONDS = 30
INTERVAL_SECONDS = 10


def runner_id() -> str:
    """This process, as recorded on run rows (recomputed: a forked child has a new pid)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def beat(runner: str | None = None) -> None:
    try:
        get_redis().set(KEY.format(runner or runner_id()), "1", ex=TTL_SECONDS)
    except redis.RedisError as exc:
        log.warning("could not record heartbeat in Redis: %s", exc)


def runner_alive(runner: str | None) -> bool | None:
    """True/False when known; None when Redis cannot tell and the runner is on another host."""
    if not runner:
        return False
    host, _, pid = runner.rpartition(":")
    if host == socket.gethostname() and pid.isdigit() and not _pid_exists(int(pid)):
        return False
    try:
        return bool(get_redis().exists(KEY.format(runner)))
    except redis.RedisError:
        return True if host == socket.gethostname() else None


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_active = 0                 # Heartbeat blocks open in this process
_active_lock = threading.Lock()


class Heartbeat:
    """Context manager: keep this process's runner key alive while the block runs."""

    def __init__(self):
        self.runner = runner_id()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="handled-heartbeat", daemon=True)

    def __enter__(self) -> "Heartbeat":
        global _active
        with _active_lock:
            _active += 1
        beat(self.runner)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(INTERVAL_SECONDS):
            beat(self.runner)

    def __exit__(self, *exc) -> None:
        global _active
        self._stop.set()
        self._thread.join(timeout=2)
        with _active_lock:
            _active -= 1
            last = _active == 0
        if not last:
            return
        try:
            get_redis().delete(KEY.format(self.runner))
        except redis.RedisError:
            pass
