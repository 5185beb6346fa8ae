"""The SDKs' HTTP connections with fewer system calls per request.

A worker keeps hundreds of calls in flight on as many threads, and every system call that
lets go of the GIL costs a hand-off between them (a futex wake and wait, a context switch:
more CPU than the call itself on a busy worker). httpcore's stream makes five or six of
them per request: a write for the request's head, another for its body, and before each
write and each read a ``poll`` (that is how Python keeps a socket's timeout). This stream,
installed in each SDK client's connection pool, holds the writes until the request's first
read and sends them in one, and on a plain TCP socket (not TLS, whose reads Python has to
drive, nor gevent's sockets, which wait in its hub) it blocks with the kernel keeping the
timeouts (``SO_RCVTIMEO``, ``SO_SNDTIMEO``) instead of polling. Timeouts and errors stay
httpcore's own: a read that times out is a ``ReadTimeout``; a failed write is passed over
for the read, as httpcore does (the server may have answered before it closed), so the SDK
reports each as it always did.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from types import ModuleType
from typing import Any

import httpcore2

from producer_tasks.sockets import is_native, kernel_timeval

FLUSH_BYTES = 64 * 1024  # a request body larger than this goes out as it is written
_HTTP_CLIENT_CLASSES: dict[str, type] = {}


class Stream(httpcore2.NetworkStream):
    """Wraps the backend's stream: writes wait for the next read; plain sockets block."""

    def __init__(self, inner: httpcore2.NetworkStream) -> None:
        self._inner = inner
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._write_timeout: float | None = None
        sock = inner.get_extra_info("socket")
        self._sock: socket.socket | None = sock if is_native(sock) else None  # SSLSocket: not native
        self._timeouts: dict[int, float | None] = {}  # the kernel's, as last set
        if self._sock is not None:
            self._sock.settimeout(None)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        if self._pending:  # a failed write moves on to the read, as httpcore's own does: a
            with contextlib.suppress(httpcore2.WriteError):  # server may answer, then close
                self._flush()
        if self._sock is None:
            return self._inner.read(max_bytes, timeout)
        self._set_timeout(socket.SO_RCVTIMEO, timeout)
        try:
            return self._sock.recv(max_bytes)
        except BlockingIOError as exc:  # SO_RCVTIMEO ran out
            raise httpcore2.ReadTimeout(f"no answer within {timeout} s") from exc
        except OSError as exc:
            raise httpcore2.ReadError(str(exc)) from exc

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        self._pending.append(bytes(buffer))
        self._pending_size += len(buffer)
        self._write_timeout = timeout
        if self._pending_size > FLUSH_BYTES:
            self._flush()

    def _flush(self) -> None:
        data = b"".join(self._pending)
        self._pending.clear()
        self._pending_size = 0
        if self._sock is None:
            self._inner.write(data, self._write_timeout)
            return
        self._set_timeout(socket.SO_SNDTIMEO, self._write_timeout)
        try:
            self._sock.sendall(data)
        except BlockingIOError as exc:  # SO_SNDTIMEO ran out
            raise httpcore2.WriteTimeout(f"could not send within {self._write_timeout} s") from exc
        except OSError as exc:
            raise httpcore2.WriteError(str(exc)) from exc

    def _set_timeout(self, option: int, timeout: float | None) -> None:
        if self._timeouts.get(option, -1.0) != timeout:
            assert self._sock is not None
            self._sock.setsockopt(socket.SOL_SOCKET, option, kernel_timeval(timeout))
            self._timeouts[option] = timeout

    def close(self) -> None:
        self._pending.clear()
        self._inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore2.NetworkStream:
        self._sock = None  # TLS keeps Python's timeouts: the inner stream's start_tls sets them
        return Stream(self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class Backend(httpcore2.SyncBackend):
    """httpcore's own backend, its streams wrapped in ``Stream``."""

    def connect_tcp(self, *args: Any, **kwargs: Any) -> httpcore2.NetworkStream:
        return Stream(super().connect_tcp(*args, **kwargs))

    def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore2.NetworkStream:
        return Stream(super().connect_unix_socket(*args, **kwargs))


def install(client: Any) -> bool:
    """``Backend`` in the connection pool of an SDK's httpx ``client``; False where the
    client's transport is not httpx's own (a proxy or a transport of the caller's keep
    theirs)."""
    pool = getattr(getattr(client, "_transport", None), "_pool", None)
    if isinstance(pool, httpcore2.ConnectionPool) and type(getattr(pool, "_network_backend", None)) is (
        httpcore2.SyncBackend
    ):
        pool._network_backend = Backend()
        return True
    return False


def sdk_http_client(module: ModuleType, tls: Any) -> Any:
    """The SDK ``module``'s default HTTP client with a shared TLS context and ``Backend``,
    closed when dropped (as the SDK closes the client it makes itself; one passed in is the
    caller's to close)."""
    cls = _HTTP_CLIENT_CLASSES.get(module.__name__)
    if cls is None:

        class Owned(module.DefaultHttpxClient):  # type: ignore[misc,name-defined]
            def __del__(self) -> None:
                if not self.is_closed:
                    with contextlib.suppress(Exception):
                        self.close()

        cls = _HTTP_CLIENT_CLASSES[module.__name__] = Owned
    client = cls(verify=tls)
    install(client)
    return client
