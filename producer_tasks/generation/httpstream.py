"""The SDKs' HTTP connections with fewer system calls per request.

A worker keeps hundreds of calls in flight on as many threads, and every system call that
lets go of the GIL costs a hand-off between them (a futex wake and wait, a context switch:
more CPU than the call itself on a busy worker). httpcore's stream makes five or six of
them per request: a write for the request's head, another for its body, and before each
write and each read a ``poll`` (that is how Python keeps a socket's timeout). This stream,
made by the network backend of each SDK client's connection pool (``Transport``), holds
the writes until the request's first read and sends them in one, and on a plain TCP socket
(not TLS, whose reads Python has to drive, nor gevent's sockets, which wait in its hub) it
blocks with the kernel keeping the timeouts (``SO_RCVTIMEO``, ``SO_SNDTIMEO``) instead of
polling. Everything goes through public seams: httpcore's ``ConnectionPool(network_backend=)``
inside an httpx ``BaseTransport``, given to the SDK as ``DefaultHttpxClient(transport=)``.
Timeouts and errors stay httpcore's own: a read that times out is a ``ReadTimeout``; a
failed write is passed over for the read, as httpcore does (the server may have answered
before it closed), so the SDK reports each as it always did.

Every answer is bounded before it is held (issue 30): the whole request, headers and body,
has a wall-clock deadline (the SDK's timeout, which httpx gives per read, becomes the bound
of the call: each read waits at most for what is left of it, so a server that drips a byte
a second ends at the deadline), and the body is counted as it arrives: beyond
``max_response_bytes`` the connection is dropped and ``ResponseLimitError`` raised.
"""

from __future__ import annotations

import contextlib
import contextvars
import socket
import ssl
import time
from collections.abc import Iterable, Iterator
from types import ModuleType
from typing import Any

import httpcore2
import httpx2

from producer_tasks.sockets import is_native, kernel_timeval

FLUSH_BYTES = 64 * 1024  # a request body larger than this goes out as it is written
# the monotonic time by which this thread's (or greenlet's) current request must be done
DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "producer_http_deadline", default=None
)


class ResponseLimitError(Exception):
    """An answer larger than the byte cap: dropped before it was held whole."""


def limit_behind(exc: BaseException) -> ResponseLimitError | None:
    """The ResponseLimitError behind an SDK's connection error (its cause or context), if any."""
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None or isinstance(seen, ResponseLimitError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _within_deadline(timeout: float | None) -> float | None:
    """A read's or write's timeout, cut to what is left of the request's deadline."""
    deadline = DEADLINE.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise httpcore2.ReadTimeout("the answer took longer than the request timeout")
    return left if timeout is None else min(timeout, left)


# as the SDKs' own default clients have them (their DEFAULT_CONNECTION_LIMITS)
LIMITS = httpx2.Limits(max_connections=1000, max_keepalive_connections=100)
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
        timeout = _within_deadline(timeout)
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


@contextlib.contextmanager
def _as_httpx_errors() -> Iterator[None]:
    """httpcore's exceptions as httpx's of the same name, the most specific first (as httpx's
    own transport maps them; the SDKs catch httpx's)."""
    try:
        yield
    except Exception as exc:
        mapped = _httpx_error(exc)
        if mapped is exc:
            raise
        raise mapped from exc


def _httpx_error(exc: Exception) -> Exception:
    for cls in type(exc).__mro__:
        mapped = getattr(httpx2, cls.__name__, None) if cls.__module__.startswith("httpcore2") else None
        if isinstance(mapped, type) and issubclass(mapped, httpx2.HTTPError):
            return mapped(str(exc))
    return exc


class _ResponseStream(httpx2.SyncByteStream):
    def __init__(self, stream: Iterable[bytes], max_bytes: int | None) -> None:
        self._stream = stream
        self._max_bytes = max_bytes

    def __iter__(self) -> Iterator[bytes]:
        received = 0
        with _as_httpx_errors():
            for chunk in self._stream:
                received += len(chunk)
                if self._max_bytes is not None and received > self._max_bytes:
                    raise ResponseLimitError(
                        f"answer larger than {self._max_bytes} bytes (PRODUCER_MAX_RESPONSE_BYTES): dropped"
                    )
                yield chunk

    def close(self) -> None:
        DEADLINE.set(None)  # the call is over: later reads on this thread have no deadline
        close = getattr(self._stream, "close", None)
        if close is not None:
            with _as_httpx_errors():
                close()


class Transport(httpx2.BaseTransport):
    """An httpx transport whose connection pool makes its connections through ``Backend``:
    httpcore's ``ConnectionPool(network_backend=...)`` behind httpx's public transport
    interface, handed to the SDKs as ``DefaultHttpxClient(transport=...)``. What it does is
    what httpx's own ``HTTPTransport`` does for a direct connection (no proxy: a fleet that
    needs one gives the provider's base URL)."""

    def __init__(
        self,
        ssl_context: ssl.SSLContext,
        limits: httpx2.Limits = LIMITS,
        network_backend: httpcore2.NetworkBackend | None = None,
        *,
        max_response_bytes: int | None = None,
    ) -> None:
        self._max_response_bytes = max_response_bytes
        self._pool = httpcore2.ConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=network_backend or Backend(),
        )

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        assert isinstance(request.stream, httpx2.SyncByteStream)
        core = httpcore2.Request(
            method=request.method,
            url=httpcore2.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        timeouts = request.extensions.get("timeout") or {}
        bound = max((t for t in timeouts.values() if t is not None), default=None)
        # the call's deadline: each read waits at most for what is left (Stream.read)
        DEADLINE.set(None if bound is None else time.monotonic() + bound)
        try:
            with _as_httpx_errors():
                response = self._pool.handle_request(core)
        except BaseException:
            DEADLINE.set(None)
            raise
        assert isinstance(response.stream, Iterable)
        return httpx2.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response.stream, self._max_response_bytes),
            extensions=response.extensions,
        )

    def close(self) -> None:
        self._pool.close()


def sdk_http_client(module: ModuleType, tls: ssl.SSLContext, *, max_response_bytes: int | None = None) -> Any:
    """The SDK ``module``'s default HTTP client on our ``Transport`` with a shared TLS
    context, closed when dropped (as the SDK closes the client it makes itself; one passed
    in is the caller's to close)."""
    cls = _HTTP_CLIENT_CLASSES.get(module.__name__)
    if cls is None:

        class Owned(module.DefaultHttpxClient):  # type: ignore[misc,name-defined]
            def __del__(self) -> None:
                # no module-level names here: at interpreter exit they may be gone already
                try:
                    if not self.is_closed:
                        self.close()
                except Exception:
                    pass

        cls = _HTTP_CLIENT_CLASSES[module.__name__] = Owned
    return cls(transport=Transport(tls, max_response_bytes=max_response_bytes))
