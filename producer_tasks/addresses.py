"""Addresses and URLs of the fleet's peers: ``host:port`` and the Sentinel URLs Celery reads."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from producer_tasks.printable import quoted


def parse_addr(value: str) -> tuple[str, int]:
    """Split ``host:port`` (``[v6]:port`` too) with a clear error."""
    host, sep, port_text = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{quoted(value)} is not host:port")
    return host, int(port_text)


REDIS_SCHEMES = ("redis://", "rediss://", "unix://", "redis+socket://")


def check_redis_url(value: str) -> str:
    """``value`` if it is a Redis URL; the error quotes it with its password masked."""
    if not value.startswith(REDIS_SCHEMES):
        raise ValueError(
            f"{quoted(mask_url(value))} is not a Redis URL (it must start with {', '.join(REDIS_SCHEMES)})"
        )
    return value


def parse_sentinels(value: str) -> list[tuple[str, int]]:
    """``host:port,host:port`` (at least one)."""
    parts = [part.strip() for part in value.split(",") if part.strip()]
    if not parts:
        raise ValueError("expected host:port,host:port")
    return [parse_addr(part) for part in parts]


def sentinel_url(redis_url: str, sentinels: list[tuple[str, int]]) -> str:
    """The Sentinels as Celery/kombu want them: ``sentinel://[:pw@]host:port/db;...``
    (password, user and db from ``redis_url``; the master name goes in transport options)."""
    parts = urlsplit(redis_url)
    credentials = parts.password is not None or parts.username
    auth = f"{parts.username or ''}:{parts.password or ''}@" if credentials else ""
    db = parts.path.strip("/") or "0"
    hosts = (f"[{h}]" if ":" in h else h for h, _ in sentinels)
    return ";".join(f"sentinel://{auth}{h}:{p}/{db}" for h, (_, p) in zip(hosts, sentinels, strict=True))


def mask_url(url: str) -> str:
    """``url`` with its password (and a user name beside it) replaced by ``***``: safe to print."""
    parts = urlsplit(url)
    if parts.password is None and not parts.username:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment))
