"""Fleet-wide limits: RPM/TPM buckets and the 429 cooldown, against a real redis-server."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from producer_tasks import lanes
from producer_tasks.generation.cycle import Outcome
from producer_tasks.records import LaneStatus, ProviderStatus
from producer_tasks.state import outcomes, ratelimit
from tests.conftest import make_runtime, provider_env, write_providers_file
from tests.fakellm import API_KEY, FakeLLM
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


@pytest.mark.adversarial
@pytest.mark.parametrize("retry_after", ["1e12", "inf"])
def test_a_huge_retry_after_is_clamped_and_the_provider_comes_back(
    redis_url: str, installed_runtime: Any, fake_llm: FakeLLM, retry_after: str
) -> None:
    """A 429 with Retry-After 10^12 s (or inf) through the real SDK: the cooldown is the cap
    (PRODUCER_MAX_RETRY_AFTER_S), and once it has passed the provider is called again."""
    rt, rec = make_runtime(
        redis_url, PRODUCER_CONCURRENCY="1", PRODUCER_MAX_RETRY_AFTER_S="0.5", **provider_env(fake_llm)
    )
    installed_runtime(rt)
    serve(rt, "openai")
    start(rt, weights={"openai": 1.0})
    fake_llm.set("openai", mode="status", status=429, retry_after=retry_after, count=1)
    rt.lanes.reconcile()
    assert run_next(rec) == Outcome.FAILED
    view = rt.fleet.view()
    assert 0 < view.health["openai"].cooldown_until_ms - view.now_ms <= 500
    time.sleep(0.6)
    assert "openai" in lanes.eligible_providers(rt.fleet.view())  # usable after the clamp
    rt.lanes.reconcile()
    for _ in range(5):
        if run_next(rec) is Outcome.DELIVERED:
            break
    assert fake_llm.count("openai", kind="chat/completions") >= 2


@pytest.mark.adversarial
def test_a_stored_cooldown_is_never_further_than_the_cap(redis_url: str, installed_runtime: Any) -> None:
    """Whatever Redis already holds (10^15 ms from an older version, or by hand), the next
    outcome brings it within the cap."""
    rt, _ = make_runtime(redis_url, PRODUCER_MAX_RETRY_AFTER_S="2")
    installed_runtime(rt)
    rt.fleet.redis.hset(rt.fleet.keys.health("mock"), "cooldown_until_ms", 10**15)
    outcomes.record_outcome(rt.fleet, rt.settings, "mock", success=True)
    view = rt.fleet.view()
    assert 0 < view.health["mock"].cooldown_until_ms - view.now_ms <= 2000


def test_each_named_provider_holds_its_own_limits_and_prices(
    redis_url: str, installed_runtime: Any, fake_llm: FakeLLM, tmp_path: Path
) -> None:
    """Two named providers on one server, with different RPM caps and prices."""
    shared = {"kind": "openai", "base_url": f"{fake_llm.url}/v1", "api_key_env": "SHARED_KEY"}
    env = write_providers_file(
        tmp_path / "providers.toml",
        {
            "small": {**shared, "model": "small-model", "rpm": 3, "price_input_per_mtok": 1000.0},
            "large": {**shared, "model": "large-model", "rpm": 6, "price_output_per_mtok": 2000.0},
        },
    )
    rt, rec = make_runtime(redis_url, PRODUCER_CONCURRENCY="12", SHARED_KEY=API_KEY, **env)
    installed_runtime(rt)
    serve(rt, "small", "large")
    start(rt, weights={"small": 1.0, "large": 1.0})
    rt.lanes.reconcile()
    for _ in range(100):
        if not rec.sent:
            break
        run_next(rec)
    served = Counter(r.body["model"] for r in fake_llm.requests)
    assert served == {"small-model": 3, "large-model": 6}  # each cap held, neither borrowed the other's
    view = rt.fleet.view()
    reasons = {lane.reason for lane in view.lanes.values() if lane.status is LaneStatus.WAITING}
    assert reasons <= {"rate limited (small)", "rate limited (large)"} and reasons
    small, large = rt.fleet.read_stats("small"), rt.fleet.read_stats("large")
    assert small.cost_usd == pytest.approx(small.prompt_tokens * 1000.0 / 1e6)  # input price only
    assert large.cost_usd == pytest.approx(large.completion_tokens * 2000.0 / 1e6)  # output price only
    assert small.cost_usd > 0 and large.cost_usd > 0
