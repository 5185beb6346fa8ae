"""Health rules as pure functions (stored in Redis by ``state/outcomes.py`` and its Lua script).

The rules: a success resets the failure count and makes the provider Healthy;
each failure counts; ``unhealthy_after`` (3) consecutive failures make it Unhealthy
(fewer: Degraded). The average response time is the mean over successful calls.
A 429 sets a fleet-wide cooldown until its Retry-After (or the backoff) has passed; it
makes the provider Degraded but does not count towards Unhealthy (the provider answers).
"""

from __future__ import annotations

import random

from producer_tasks.records import HealthRecord, ProviderStatus


def record_success(health: HealthRecord, *, now_ms: int, response_ms: float) -> HealthRecord:
    return health.model_copy(
        update={
            "consecutive_failures": 0,
            "last_success_ms": now_ms,
            "successes": health.successes + 1,
            "total_response_ms": health.total_response_ms + response_ms,
            "status": ProviderStatus.HEALTHY,
            "last_error": "",
        }
    )


def record_failure(
    health: HealthRecord,
    *,
    now_ms: int,
    unhealthy_after: int,
    error: str,
    cooldown_until_ms: int | None = None,
) -> HealthRecord:
    failures = health.consecutive_failures + 1
    status = ProviderStatus.UNHEALTHY if failures >= unhealthy_after else ProviderStatus.DEGRADED
    update: dict[str, object] = {
        "consecutive_failures": failures,
        "last_failure_ms": now_ms,
        "status": status,
        "last_error": error[:300],
    }
    if cooldown_until_ms is not None:
        update["cooldown_until_ms"] = max(health.cooldown_until_ms, cooldown_until_ms)
    return health.model_copy(update=update)


def record_rate_limit(
    health: HealthRecord, *, now_ms: int, error: str, cooldown_until_ms: int
) -> HealthRecord:
    """A 429 is no sign of ill health: a fleet-wide cooldown, Degraded, failures unchanged."""
    status = health.status if health.status is ProviderStatus.UNHEALTHY else ProviderStatus.DEGRADED
    return health.model_copy(
        update={
            "last_failure_ms": now_ms,
            "status": status,
            "last_error": error[:300],
            "cooldown_until_ms": max(health.cooldown_until_ms, cooldown_until_ms),
        }
    )


def is_usable(health: HealthRecord, *, now_ms: int) -> bool:
    """Selectable for a cycle: not Unhealthy and not cooling down after a 429."""
    return health.status is not ProviderStatus.UNHEALTHY and health.cooldown_until_ms <= now_ms


def unusable_reason(health: HealthRecord, *, now_ms: int) -> str | None:
    if health.status is ProviderStatus.UNHEALTHY:
        detail = f": {health.last_error}" if health.last_error else ""
        return f"unhealthy after {health.consecutive_failures} failures{detail}"
    if health.cooldown_until_ms > now_ms:
        return f"cooling down for {(health.cooldown_until_ms - now_ms) / 1000:.1f}s after a 429"
    return None


def backoff_s(attempt: int, *, base_s: float, max_s: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with jitter: uniform in [c/2, c], c = min(max, base * 2**(attempt-1))."""
    if attempt < 1:
        return 0.0
    ceiling = min(max_s, base_s * (2 ** min(attempt - 1, 62)))
    return (rng or random).uniform(ceiling / 2, ceiling)
