"""The Redis connection of the state layer, and where redis-py errors become ours."""

from __future__ import annotations

import functools
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar
from urllib.parse import urlsplit

import redis
from redis.sentinel import Sentinel, SentinelConnectionPool

from producer_tasks.errors import StateError
from producer_tasks.settings import Settings
from producer_tasks.sockets import is_native, use_kernel_timeouts

P = ParamSpec("P")
R = TypeVar("R")
SOCKET_TIMEOUT_S = 10
CONNECT_TIMEOUT_S = 5
HEALTH_CHECK_INTERVAL_S = 30
# redis-py's pool raises "Too many connections" the moment all of its connections are busy,
# which a worker with hundreds of cycles in flight reaches in bursts (at 1,024 in flight,
# thousands of failed acks and retried state calls a run). Ours wait for one instead.
POOL_SIZE = 100  # the state client's (redis-py's default size); kombu's is its own (10)
POOL_WAIT_S = SOCKET_TIMEOUT_S  # then "No connection available": a Redis error like any other


def is_tcp(url: str) -> bool:
    return url.startswith(("redis://", "rediss://", "sentinel://"))


def _server(url: str) -> tuple[str, str, int, str]:
    """Where a Redis URL points: (kind, host or socket path, port, database)."""
    parts = urlsplit(url)
    query = dict(q.split("=", 1) for q in parts.query.split("&") if "=" in q)
    if parts.scheme in ("unix", "redis+socket"):
        return "socket", parts.path, 0, query.get("db", query.get("virtual_host", "0"))
    database = parts.path.strip("/") or query.get("db", "0")
    return "tcp", (parts.hostname or "localhost").lower(), parts.port or 6379, database


def broker_is_fleet(settings: Settings) -> bool:
    """The Celery broker is the fleet's own Redis (``CELERY_BROKER_URL`` unset, or naming the
    same server and database as ``REDIS_URL``): a script may push a cycle's message."""
    broker = settings.celery_broker_url
    return broker is None or _server(broker) == _server(settings.redis_url)


def connect(settings: Settings) -> redis.Redis:
    """A client for ``REDIS_URL`` (every reply decoded as text), or for the master the
    Sentinels name when ``REDIS_SENTINELS`` is set (it follows a failover)."""
    if settings.sentinels:
        return _sentinel_master(settings)
    options: dict[str, Any] = {}
    if is_tcp(settings.redis_url):  # a Unix socket (the embedded Redis) takes no keepalive
        options["socket_keepalive"] = True
    if settings.redis_tls_insecure and settings.redis_url.startswith("rediss://"):
        options["ssl_cert_reqs"] = "none"
    pool = redis.BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=POOL_SIZE,
        timeout=POOL_WAIT_S,
        decode_responses=True,
        socket_timeout=SOCKET_TIMEOUT_S,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        health_check_interval=HEALTH_CHECK_INTERVAL_S,
        retry_on_timeout=True,
        **options,
    )
    return redis.Redis.from_pool(state_connections(pool))


# --- where we lean on redis-py's internals (docs/architecture.md; tests/unit/test_internals.py)
class _KernelTimeouts:
    """A connection whose socket blocks, its timeouts kept by the kernel (``sockets``): a
    round trip 80 µs of the thread's CPU instead of 45 while another thread runs Python
    (docs/benchmarks.md). A timeout then fails the call as a connection error (retried as
    one) instead of a ``TimeoutError``. Under gevent (its sockets wait in its hub) nothing
    changes. redis-py has no public way to reach the socket (no ``socket_options``): this
    extends its private ``_connect``, fenced by ``redis<9`` and a canary."""

    socket_timeout: float | None

    def _connect(self) -> socket.socket:
        sock: socket.socket = super()._connect()  # type: ignore[misc]
        if self.socket_timeout and is_native(sock):
            use_kernel_timeouts(sock, self.socket_timeout)
        return sock


class _NoCheckoutPoll:
    """A state-client connection the pool hands out without redis-py's readiness poll (one
    more system call letting go of the GIL per round trip: 95-108 -> 66-93 µs of the
    thread's CPU per trip while another thread runs Python). The poll finds a connection
    with unread replies or one the server closed: every caller here reads all its replies or
    disconnects (``state.roundtrip``, redis-py's commands), and a connection the server
    closed fails its next trip, which the connection's retry sends again on a new one.
    redis-py 8 also reads push notifications and client-side-cache invalidations there:
    ``state_connections`` refuses a pool with RESP3 (which maintenance notifications need
    too) or a cache, so nothing of the kind can be pending. Only for the state client, which never
    subscribes (PubSub polls with ``can_read``)."""

    def can_read(self, timeout: float = 0) -> bool:
        return False if timeout == 0 else bool(super().can_read(timeout))  # type: ignore[misc]


@functools.cache
def _connection_class(base: type, *mixins: type) -> type:
    """``base`` with those of ``mixins`` it lacks; TLS keeps Python's timeouts (a TLS read
    may take several reads)."""
    tls = issubclass(base, redis.SSLConnection)
    lacking = tuple(m for m in mixins if not issubclass(base, m) and not (tls and m is _KernelTimeouts))
    return type(base.__name__, (*lacking, base), {}) if lacking else base


PoolT = TypeVar("PoolT", bound=redis.ConnectionPool)


def _with_mixins(pool: PoolT, *mixins: type) -> PoolT:
    pool.connection_class = _connection_class(pool.connection_class, *mixins)
    return pool


def state_connections(pool: PoolT) -> PoolT:
    """The state client's ``pool``: kernel timeouts, no readiness poll at checkout (refused
    where the poll has other work: RESP3 push notifications, a client-side cache)."""
    kwargs = pool.connection_kwargs
    if kwargs.get("protocol") not in (None, 2, "2") or getattr(pool, "cache", None) is not None:
        raise StateError("the state client's pool must speak RESP2 without a client-side cache")
    return _with_mixins(pool, _NoCheckoutPoll, _KernelTimeouts)


def with_kernel_timeouts(pool: PoolT) -> PoolT:
    """``pool`` making its connections with kernel timeouts (see ``_KernelTimeouts``)."""
    return _with_mixins(pool, _KernelTimeouts)


def waiting_pool(params: dict[str, Any]) -> redis.ConnectionPool:
    """A connection pool for kombu's Redis channel (its ``_connparams``): like the state
    client's, it waits up to ``POOL_WAIT_S`` for a busy connection rather than failing."""
    return with_kernel_timeouts(redis.BlockingConnectionPool(timeout=POOL_WAIT_S, **params))  # type: ignore[no-untyped-call,unused-ignore]


class WaitingSentinelPool(SentinelConnectionPool, redis.BlockingConnectionPool):
    """The master's pool when the Sentinels name it (it follows a failover), waiting for a
    busy connection as the direct pools do (redis-py has no such class of its own)."""


def waiting_sentinel_pool(pool: SentinelConnectionPool) -> WaitingSentinelPool:
    """kombu's Sentinel channel pool (built by ``master_for``, not yet connected) remade as a
    waiting one with the same Sentinels, master and connection settings."""
    # (its connection_kwargs hold the old pool's proxy; the new pool replaces it with its own)
    waiting = WaitingSentinelPool(  # type: ignore[no-untyped-call,unused-ignore]
        pool.service_name,
        pool.sentinel_manager,
        is_master=pool.is_master,
        check_connection=pool.check_connection,
        max_connections=pool.max_connections,
        timeout=POOL_WAIT_S,
        connection_class=pool.connection_class,
        **pool.connection_kwargs,
    )
    return with_kernel_timeouts(waiting)


def _sentinel_master(settings: Settings) -> redis.Redis:
    parts = urlsplit(settings.redis_url)
    timeouts: dict[str, Any] = {
        "socket_timeout": SOCKET_TIMEOUT_S,
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
    }
    sentinel_password = settings.redis_sentinel_password
    sentinel = Sentinel(  # type: ignore[no-untyped-call,unused-ignore]  # typed from redis-py 8
        settings.sentinels,
        sentinel_kwargs={
            **timeouts,
            **({"password": sentinel_password.get_secret_value()} if sentinel_password else {}),
        },
        **timeouts,
    )
    master: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call,unused-ignore]
        settings.redis_sentinel_master,
        redis_class=redis.Redis,
        connection_pool_class=WaitingSentinelPool,
        max_connections=POOL_SIZE,
        timeout=POOL_WAIT_S,
        decode_responses=True,
        db=int(parts.path.strip("/") or 0),
        username=parts.username or None,
        password=parts.password or None,
        socket_keepalive=True,
        health_check_interval=HEALTH_CHECK_INTERVAL_S,
        retry_on_timeout=True,
    )
    state_connections(master.connection_pool)
    return master


@contextmanager
def redis_errors(what: str) -> Iterator[None]:
    """Translate redis-py errors into StateError at the boundary."""
    try:
        yield
    except redis.RedisError as exc:
        raise StateError(f"redis: {what} failed: {exc}") from exc


def translated(what: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorator form of ``redis_errors``."""

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            with redis_errors(what):
                return func(*args, **kwargs)

        return wrapper

    return decorate
