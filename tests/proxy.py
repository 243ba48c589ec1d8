"""A TCP proxy for fault tests: between the code and a real server (moto's S3, an MLflow server), it
passes bytes through, cuts every connection, or stalls them (accepts, then never answers).

    with FaultProxy(upstream_url) as proxy:       # proxy.url points at the proxy, same scheme and path
        proxy.mode = "cut"                         # open connections are reset; new ones are reset at once
        proxy.mode = "stall"                       # bytes are swallowed: the client waits for its timeout
        proxy.mode = "pass"

``proxy.cut_when(predicate)`` switches to "cut" as soon as a request's first bytes match (e.g. a DELETE of
the lock object), so a fault lands at one exact call, not after a sleep; ``fault_when(predicate, "stall")``
likewise hangs it there, and ``proxy.faulted`` (an Event) says when it happened.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
import urllib.parse
from collections.abc import Callable
from typing import Literal

Mode = Literal["pass", "cut", "stall"]


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        parsed = urllib.parse.urlsplit(upstream)
        self.upstream = (parsed.hostname or "127.0.0.1", parsed.port or 80)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = urllib.parse.urlunsplit((parsed.scheme, f"127.0.0.1:{self.port}", parsed.path, "", ""))
        self.mode: Mode = "pass"
        self.requests: list[bytes] = []  # the first bytes of every client send, for assertions
        self._trigger: Callable[[bytes], bool] | None = None
        self._fault: Mode = "cut"
        self.faulted = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def cut_when(self, predicate: Callable[[bytes], bool]) -> None:
        """Cut (this connection and every later one) when a client sends bytes matching ``predicate``."""
        self.fault_when(predicate, "cut")

    def fault_when(self, predicate: Callable[[bytes], bool], mode: Mode) -> None:
        """Switch to ``mode`` ("cut" or "stall") when a client sends bytes matching ``predicate``; those bytes
        never reach the server. ``faulted`` is set then: the test's signal that the fault has landed."""
        self._trigger, self._fault = predicate, mode

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.close()
        self._reset_all()

    def _reset_all(self) -> None:
        with self._lock:
            sockets, self._sockets = set(self._sockets), set()
        for sock in sockets:
            _reset(sock)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.mode == "cut":
                _reset(client)
                continue
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.upstream, timeout=10)
        except OSError:
            _reset(client)
            return
        with self._lock:
            self._sockets |= {client, upstream}
        ended = False  # a side closed its end as TCP does: the other gets a clean close, not a reset
        try:
            while not self._closed:
                if self.mode == "cut":
                    break
                ready, _, _ = select.select([client, upstream], [], [], 0.05)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:  # e.g. the server closes after an error response: the client must still read it
                        ended = True
                        return
                    if self.mode == "stall":
                        continue  # swallowed: neither side hears anything more
                    if sock is client:
                        self.requests.append(data[:200])
                        if self._trigger is not None and self._trigger(data):
                            self._trigger, self.mode = None, self._fault
                            self.faulted.set()
                            if self.mode == "cut":
                                return
                            continue
                    (upstream if sock is client else client).sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._sockets -= {client, upstream}
            if ended and self.mode == "pass":
                with contextlib.suppress(OSError):
                    client.close()
            else:
                _reset(client)
            with contextlib.suppress(OSError):
                upstream.close()


def _reset(sock: socket.socket) -> None:
    """Close with an RST (SO_LINGER 0), as a dropped connection looks to the client."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()
