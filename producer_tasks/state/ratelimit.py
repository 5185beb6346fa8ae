"""Fleet-wide rate limits per provider (requests and tokens per minute), in Redis.

Celery's ``rate_limit`` is per worker; these buckets are shared by the whole fleet.
A call takes one request and an estimate of its tokens (prompt/4 + max_tokens); after
the call the token bucket is corrected by the real usage.
"""

from __future__ import annotations

from producer_tasks.clock import now_ms
from producer_tasks.settings import Settings
from producer_tasks.state.client import redis_errors
from producer_tasks.state.fleet import Fleet
from producer_tasks.state.scripts import RateLimit


def estimate_tokens(prompt: str, max_tokens: int) -> int:
    return len(prompt) // 4 + max_tokens


def acquire(fleet: Fleet, settings: Settings, provider: str, *, tokens: int) -> int:
    """0 when the call may go now (budget debited), else the milliseconds to wait."""
    rpm, tpm = settings.rate_limits(provider)
    if rpm is None and tpm is None:
        return 0
    return int(
        fleet.call(
            RateLimit(
                requests_key=fleet.keys.rate(provider, "rpm"),
                tokens_key=fleet.keys.rate(provider, "tpm"),
                now_ms=now_ms(),
                rpm=rpm or 0,
                tpm=tpm or 0,
                tokens=tokens,
            )
        )
    )


def correct(fleet: Fleet, settings: Settings, provider: str, *, estimated: int, used: int) -> None:
    """Give back (or take) the difference between the estimate and the real usage."""
    _, tpm = settings.rate_limits(provider)
    if tpm is None or estimated == used:
        return
    with redis_errors("correct token bucket"):
        fleet.redis.hincrbyfloat(fleet.keys.rate(provider, "tpm"), "level", estimated - used)
