"""Fleet-wide rate limits per provider (requests and tokens per minute), in Redis.

Celery's ``rate_limit`` is per worker; these buckets are shared by the whole fleet.
A call takes one request and an estimate of its tokens (prompt/4 + max_tokens); after
the call the token bucket is corrected by the real usage.
"""

from __future__ import annotations

from producer_tasks.fleet import Fleet, now_ms, redis_errors
from producer_tasks.settings import Settings


def estimate_tokens(prompt: str, max_tokens: int) -> int:
    return len(prompt) // 4 + max_tokens


def acquire(fleet: Fleet, settings: Settings, provider: str, *, tokens: int) -> int:
    """0 when the call may go now (budget debited), else the milliseconds to wait."""
    rpm, tpm = settings.rate_limits(provider)
    if rpm is None and tpm is None:
        return 0
    return int(
        fleet.script(
            "ratelimit",
            [fleet.keys.rate(provider, "rpm"), fleet.keys.rate(provider, "tpm")],
            [now_ms(), rpm or 0, tpm or 0, tokens],
        )
    )


def correct(fleet: Fleet, settings: Settings, provider: str, *, estimated: int, used: int) -> None:
    """Give back (or take) the difference between the estimate and the real usage."""
    _, tpm = settings.rate_limits(provider)
    if tpm is None or estimated == used:
        return
    with redis_errors("correct token bucket"):
        fleet.redis.hincrbyfloat(fleet.keys.rate(provider, "tpm"), "level", estimated - used)
