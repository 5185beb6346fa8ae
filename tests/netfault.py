"""A TCP proxy in front of a real server that injects socket faults: cut every connection
for a while, or swallow one reply and drop that connection (the client never learns
whether its command ran)."""

from __future__ import annotations

import contextlib
import socket
import threading
from dataclasses import dataclass, field


@dataclass
class FaultProxy:
    upstream_port: int
    port: int = 0
    cut_off: threading.Event = field(default_factory=threading.Event)
    drop_marker: bytes = b""  # the next request containing it loses its reply
    dropped: int = 0
    _sockets: list[socket.socket] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _closing: threading.Event = field(default_factory=threading.Event)
    _listener: socket.socket | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> FaultProxy:
        listener = socket.create_server(("127.0.0.1", 0))
        listener.settimeout(0.2)
        self._listener, self.port = listener, listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def cut(self) -> None:
        """Every connection is dropped, and new ones are dropped at once, until ``restore``."""
        self.cut_off.set()
        self._close_all()

    def restore(self) -> None:
        self.cut_off.clear()

    def drop_reply_to(self, marker: bytes) -> None:
        """The next request that contains ``marker`` runs, but its reply is swallowed."""
        self.drop_marker = marker

    def stop(self) -> None:
        self._closing.set()
        self._close_all()
        if self._listener is not None:
            self._listener.close()

    def _close_all(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            if self.cut_off.is_set() or self._closing.is_set():
                client.close()
                continue
            try:
                server = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                if self._closing.is_set():  # stopped while this one connected
                    client.close()
                    server.close()
                    continue
                self._sockets += [client, server]
            doomed = threading.Event()  # this connection's next reply is to be swallowed
            threading.Thread(target=self._requests, args=(client, server, doomed), daemon=True).start()
            threading.Thread(target=self._replies, args=(server, client, doomed), daemon=True).start()

    def _requests(self, source: socket.socket, target: socket.socket, doomed: threading.Event) -> None:
        try:
            while data := source.recv(65536):
                with self._lock:
                    if self.drop_marker and self.drop_marker in data:
                        self.drop_marker = b""
                        doomed.set()
                target.sendall(data)
        except OSError:
            pass
        self._shut(source, target)

    def _replies(self, source: socket.socket, target: socket.socket, doomed: threading.Event) -> None:
        try:
            while data := source.recv(65536):
                if doomed.is_set():
                    self.dropped += 1
                    break  # swallowed: the command ran, the client never hears of it
                target.sendall(data)
        except OSError:
            pass
        self._shut(source, target)

    @staticmethod
    def _shut(source: socket.socket, target: socket.socket) -> None:
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
