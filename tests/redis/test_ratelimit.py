"""Fleet-wide limits: RPM/TPM buckets and the 429 cooldown, against a real redis-server."""

from __future__ import annotations

from typing import Any

import pytest

from producer_tasks import lanes
from producer_tasks.generation.cycle import Outcome
from producer_tasks.records import LaneStatus, ProviderStatus
from producer_tasks.state import ratelimit
from tests.conftest import make_runtime, provider_env
from tests.fakellm import FakeLLM
from tests.redis.eager import run_next, serve, start

pytestmark = pytest.mark.usefixtures("eager")


def test_rate_limit_is_fleet_wide(redis_url: str, installed_runtime: Any) -> None:
    rt, rec = make_runtime(redis_url, PRODUCER_CONCURRENCY="3", PRODUCER_MOCK_RPM="2")
    installed_runtime(rt)
    serve(rt, "mock")
    start(rt)
    rt.lanes.reconcile()
    outcomes = [run_next(rec) for _ in range(3)]
    assert outcomes.count(Outcome.DELIVERED) == 2
    assert outcomes.count(Outcome.WAITING) == 1
    waiting = [lane for lane in rt.fleet.view().lanes.values() if lane.status is LaneStatus.WAITING]
    assert waiting and waiting[0].reason == "rate limited (mock)"
    assert 20_000 < waiting[0].until_ms - rt.fleet.view().now_ms <= 30_000
    assert ratelimit.acquire(rt.fleet, rt.settings, "mock", tokens=1) > 0  # shared by everyone


def test_429_sets_a_fleet_wide_cooldown(redis_url: str, installed_runtime: Any, fake_llm: FakeLLM) -> None:
    rt, rec = make_runtime(redis_url, PRODUCER_CONCURRENCY="1", **provider_env(fake_llm))
    installed_runtime(rt)
    serve(rt, "openai", "anthropic")
    start(rt, weights={"openai": 1.0, "anthropic": 1.0})
    fake_llm.set("openai", mode="status", status=429, retry_after="30")
    fake_llm.set("anthropic", mode="status", status=429, retry_after="30")
    rt.lanes.reconcile()
    assert run_next(rec) == Outcome.FAILED
    view = rt.fleet.view()
    limited = [p for p in ("openai", "anthropic") if view.health[p].cooldown_until_ms > view.now_ms]
    assert len(limited) == 1
    health = view.health[limited[0]]
    assert health.cooldown_until_ms - view.now_ms > 25_000
    assert (health.status, health.consecutive_failures) == (ProviderStatus.DEGRADED, 0)  # alive, just busy
    assert limited[0] not in lanes.eligible_providers(view)
