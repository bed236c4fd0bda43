"""A loopback TCP proxy a test puts between an app process and a server (Redis), to lose,
hold or watch traffic for real: what the app sends while the proxy drops is never delivered,
the request carrying a marker can be held until the test releases it, and requests carrying
a marker can be counted as they go by.

It runs in threads of the test process; the app process only sees a server on another port.
"""

from __future__ import annotations

import socket
import threading

CHUNK = 65536


class Hold:
    """The first client-to-server chunk containing ``marker`` waits here until ``release()``."""

    def __init__(self, marker: bytes):
        self.marker = marker
        self.held = threading.Event()
        self.released = threading.Event()

    def wait_held(self, timeout: float = 30.0) -> None:
        if not self.held.wait(timeout):
            raise AssertionError(f"no request carrying {self.marker!r} reached the proxy in {timeout} s")

    def release(self) -> None:
        self.released.set()


class Watch:
    """Counts the client-to-server reads in which ``marker`` ends (requests of a kind going by)."""

    def __init__(self, marker: bytes):
        self.marker = marker
        self.count = 0


class _Link:
    """One client connection and its connection to the server."""

    def __init__(self, proxy: "TcpProxy", client: socket.socket):
        self.proxy = proxy
        self.client = client
        self.server = socket.create_connection((proxy.target_host, proxy.target_port), timeout=5)
        self.server.settimeout(None)
        self.closed = False
        # A link opened while the proxy drops stays a black hole until it is closed at heal time.
        self.dropping = proxy.dropping
        for source, sink, upstream in ((client, self.server, True), (self.server, client, False)):
            threading.Thread(target=self._pump, args=(source, sink, upstream), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, upstream: bool) -> None:
        tail = b""
        try:
            while True:
                data = source.recv(CHUNK)
                if not data:
                    break
                if self.dropping or self.proxy.dropping:
                    self.dropping = True   # swallowed: never delivered, no answer comes back
                    continue
                if upstream:
                    self.proxy._maybe_hold(tail, data)
                    tail = (tail + data)[-4096:]
                sink.sendall(data)
        except OSError:
            pass
        finally:
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for sock in (self.client, self.server):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()


class TcpProxy:
    """``127.0.0.1:<port>`` forwarding to ``target_host:target_port``; ``drop()`` / ``heal()``
    and ``hold(marker)``. Stop it with ``stop()``."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1"):
        self.target_host, self.target_port = target_host, target_port
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.dropping = False
        self.links: list[_Link] = []
        self._holds: list[Hold] = []
        self._watches: list[Watch] = []
        self._lock = threading.Lock()
        self._stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, scheme: str = "redis", path: str = "") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                link = _Link(self, client)
            except OSError:   # the server is down: so is the proxied one
                client.close()
                continue
            with self._lock:
                self.links = [existing for existing in self.links if not existing.closed] + [link]

    def _maybe_hold(self, tail: bytes, data: bytes) -> None:
        """Hold ``data`` if a marker ends in it (one split between two reads counts; one wholly
        in ``tail``, the bytes already sent, does not)."""
        def ends_in_data(marker: bytes) -> bool:
            return (tail + data).find(marker, max(0, len(tail) - len(marker) + 1)) >= 0

        with self._lock:
            for watch in self._watches:
                watch.count += ends_in_data(watch.marker)
            hold = next((h for h in self._holds if ends_in_data(h.marker)), None)
            if hold is not None:
                self._holds.remove(hold)
        if hold is not None:
            hold.held.set()
            if not hold.released.wait(60):
                raise OSError("a held request was never released")

    def hold(self, marker: bytes) -> Hold:
        """Hold the next request whose bytes contain ``marker`` (on any connection) until released."""
        hold = Hold(marker)
        with self._lock:
            self._holds.append(hold)
        return hold

    def watch(self, marker: bytes) -> Watch:
        """Count the requests carrying ``marker`` from now on."""
        watch = Watch(marker)
        with self._lock:
            self._watches.append(watch)
        return watch

    def drop(self) -> None:
        """From now on nothing a client sends is delivered and nothing comes back (a network
        that loses every packet): the client sees a timeout, the server never sees the request."""
        self.dropping = True

    def heal(self) -> None:
        """Close the connections that swallowed traffic (what they held is lost), then forward again."""
        with self._lock:
            dropped = [link for link in self.links if link.dropping]
        self.dropping = False
        for link in dropped:
            link.close()

    def stop(self) -> None:
        self._stopped = True
        self.listener.close()
        with self._lock:
            links, self.links = self.links, []
            for hold in self._holds:
                hold.release()
        for link in links:
            link.close()
