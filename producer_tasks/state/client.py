"""The Redis connection of the state layer, and where redis-py errors become ours."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

import redis

from producer_tasks.errors import StateError
from producer_tasks.settings import Settings

P = ParamSpec("P")
R = TypeVar("R")
SOCKET_TIMEOUT_S = 10
CONNECT_TIMEOUT_S = 5
HEALTH_CHECK_INTERVAL_S = 30


def is_tcp(url: str) -> bool:
    return url.startswith(("redis://", "rediss://"))


def connect(settings: Settings) -> redis.Redis:
    """A client for ``REDIS_URL`` (every reply decoded as text)."""
    options: dict[str, Any] = {}
    if is_tcp(settings.redis_url):  # a Unix socket (the embedded Redis) takes no keepalive
        options["socket_keepalive"] = True
    if settings.redis_tls_insecure and settings.redis_url.startswith("rediss://"):
        options["ssl_cert_reqs"] = "none"
    return redis.Redis.from_url(
        settings.redis_url,
        decode_responses=True,
        socket_timeout=SOCKET_TIMEOUT_S,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        health_check_interval=HEALTH_CHECK_INTERVAL_S,
        retry_on_timeout=True,
        **options,
    )


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
