"""The health rules as pure functions, and the backoff."""

from __future__ import annotations

import random

from orchestrator_bridge.convert import health_to_wire
from producer_tasks.health import (
    backoff_s,
    is_usable,
    record_failure,
    record_rate_limit,
    record_success,
    unusable_reason,
)
from producer_tasks.records import HealthRecord, ProviderStatus


def fail(health: HealthRecord, now_ms: int = 1000) -> HealthRecord:
    return record_failure(health, now_ms=now_ms, unhealthy_after=3, error="HTTP 500")


def test_three_consecutive_failures_make_a_provider_unhealthy() -> None:
    health = HealthRecord()
    assert health.status is ProviderStatus.UNKNOWN
    health = fail(health)
    assert (health.status, health.consecutive_failures) == (ProviderStatus.DEGRADED, 1)
    health = fail(fail(health))
    assert (health.status, health.consecutive_failures) == (ProviderStatus.UNHEALTHY, 3)
    assert not is_usable(health, now_ms=2000)
    reason = unusable_reason(health, now_ms=2000)
    assert reason is not None and "unhealthy after 3 failures" in reason


def test_a_success_resets_and_averages_response_time() -> None:
    health = fail(fail(fail(HealthRecord())))
    health = record_success(health, now_ms=5000, response_ms=100)
    health = record_success(health, now_ms=6000, response_ms=300)
    assert health.status is ProviderStatus.HEALTHY
    assert health.consecutive_failures == 0
    assert health.average_response_ms == 200
    assert health.last_success_ms == 6000
    wire = health_to_wire(health)
    assert wire.average_response_time.ms == 200
    assert wire.last_success is not None and wire.last_success.unix_ms == 6000


def test_cooldown_blocks_until_it_ends() -> None:
    health = record_failure(
        HealthRecord(), now_ms=1000, unhealthy_after=3, error="429", cooldown_until_ms=4000
    )
    assert not is_usable(health, now_ms=3999)
    assert "cooling down for 1.0s" in (unusable_reason(health, now_ms=3000) or "")
    assert is_usable(health, now_ms=4000)


def test_a_rate_limit_cools_down_without_counting_towards_unhealthy() -> None:
    health = fail(fail(HealthRecord()))
    limited = record_rate_limit(health, now_ms=1000, error="429", cooldown_until_ms=9000)
    assert (limited.status, limited.consecutive_failures) == (ProviderStatus.DEGRADED, 2)
    assert not is_usable(limited, now_ms=8999) and is_usable(limited, now_ms=9000)
    unhealthy = fail(limited)
    assert (
        record_rate_limit(unhealthy, now_ms=0, error="429", cooldown_until_ms=0).status
        is ProviderStatus.UNHEALTHY
    )


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    rng = random.Random(1)
    assert backoff_s(0, base_s=1, max_s=60) == 0.0
    for attempt, ceiling in [(1, 1), (2, 2), (3, 4), (6, 32), (7, 60), (50, 60)]:
        values = [backoff_s(attempt, base_s=1, max_s=60, rng=rng) for _ in range(200)]
        assert all(ceiling / 2 <= v <= ceiling for v in values)
        assert len({round(v, 6) for v in values}) > 100  # jittered, not flat
