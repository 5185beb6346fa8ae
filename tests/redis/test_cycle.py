"""One generation cycle in Celery's eager mode, against a real redis-server: the continuous
loop, health and health checks, the outcome script, secrets, Redis blips.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest

from orchestrator_bridge.cli.embedded import EmbeddedRedis
from producer_tasks import lanes
from producer_tasks.generation.cycle import Outcome
from producer_tasks.health import record_failure, record_rate_limit, record_success
from producer_tasks.records import HealthRecord, LaneStatus, ProviderStatus
from producer_tasks.runtime import Runtime
from producer_tasks.state import bloom, outcomes
from producer_tasks.worker.tasks import cycle, health_check
from tests.conftest import RecordingDispatcher, make_runtime, provider_env
from tests.fakellm import FakeLLM
from tests.netfault import FaultProxy
from tests.redis.eager import batches, begin, call_during_request, run_next, serve, start

pytestmark = pytest.mark.usefixtures("eager")


def test_continuous_loop_delivers_and_dispatches_the_next_cycle(mock_rt: Any) -> None:
    rt, rec = mock_rt
    start(rt)
    report = rt.lanes.reconcile()
    assert report.dispatched == [0, 1]
    assert {m["provider"] for m in rec.sent} == {"mock"}
    for _ in range(6):
        assert run_next(rec) == Outcome.DELIVERED
    assert len(rec.sent) == 2  # each finished cycle dispatched its lane's next one
    delivered = batches(rt)
    assert len(delivered) == 6
    assert all(b.topic == "cheese" and b.provider_used == "mock" and b.attributes for b in delivered)
    assert all(b.metadata.provider_status is ProviderStatus.HEALTHY for b in delivered)
    stats = rt.fleet.read_stats("mock")
    assert (stats.total_requests, stats.successful_requests) == (6, 6)
    assert stats.unique_contributions == sum(len(b.attributes) for b in delivered)
    history = rt.fleet.read_history()
    assert len(history) == 1 and history[0]["success"] is True  # successes: one a second and provider
    # a second reconcile finds every lane accounted for
    assert rt.lanes.reconcile().dispatched == []


def test_three_failures_make_a_provider_unhealthy_and_a_health_check_restores_it(
    redis_url: str, installed_runtime: Any, fake_llm: FakeLLM
) -> None:
    rt, rec = make_runtime(
        redis_url, PRODUCER_CONCURRENCY="1", PRODUCER_BACKOFF_BASE_S="0.001", **provider_env(fake_llm)
    )
    installed_runtime(rt)
    serve(rt, "openai", "mock")
    start(rt, weights={"openai": 1.0})
    fake_llm.set("openai", mode="status", status=500)
    rt.lanes.reconcile()
    for expected in ("degraded", "degraded", "unhealthy"):
        assert run_next(rec) == Outcome.FAILED
        assert rt.fleet.read_health("openai").status == expected
        time.sleep(0.02)  # the (tiny) backoff is over
        rt.lanes.reconcile()
    assert rec.sent == []  # no usable provider: the lane waits, nothing is sent
    view = rt.fleet.view()
    assert view.lanes[0].status is LaneStatus.WAITING
    assert "openai: unhealthy after 3 failures" in lanes.no_provider_reason(view)
    assert health_check.delay(provider="openai").get() == "failed"  # still down
    fake_llm.set("openai")
    assert health_check.delay(provider="openai").get() == "recovered"
    assert fake_llm.requests[-1].path.endswith("/models/gpt-4o-mini")  # no tokens spent
    assert rt.fleet.read_health("openai").status is ProviderStatus.HEALTHY
    assert rt.lanes.reconcile().dispatched == [0]
    assert run_next(rec) == Outcome.DELIVERED
    stats = rt.fleet.read_stats("openai")
    assert (stats.total_requests, stats.failed_requests, stats.successful_requests) == (4, 3, 1)
    # every failure entered the history, and the success (the first within its second)
    assert [a["success"] for a in rt.fleet.read_history()] == [True, False, False, False]


def test_with_history_sampling_off_every_attempt_enters_the_history(
    redis_url: str, installed_runtime: Any
) -> None:
    rt, rec = make_runtime(redis_url, PRODUCER_CONCURRENCY="1", PRODUCER_HISTORY_SAMPLE_S="0")
    installed_runtime(rt)
    begin(rt, "mock")
    for _ in range(4):
        assert run_next(rec) == Outcome.DELIVERED
    assert [a["success"] for a in rt.fleet.read_history()] == [True] * 4


def test_outcome_script_follows_the_pure_health_rules(mock_rt: Any) -> None:
    rt, _ = mock_rt
    sequence = ["fail", "429", "fail", "ok", "fail", "fail", "fail", "429", "ok", "429", "ok", "fail"]
    pure = HealthRecord()
    for i, step in enumerate(sequence):
        ok, limited = step == "ok", step == "429"
        cooldown = 1000 * i if limited else 0
        outcomes.record_outcome(
            rt.fleet,
            rt.settings,
            "mock",
            success=ok,
            response_ms=100 + i,
            error="e",
            rate_limited=limited,
            cooldown_until_ms=cooldown,
        )
        if ok:
            pure = record_success(pure, now_ms=0, response_ms=100 + i)
        elif limited:
            pure = record_rate_limit(pure, now_ms=0, error="e", cooldown_until_ms=cooldown)
        else:
            pure = record_failure(pure, now_ms=0, unhealthy_after=rt.settings.unhealthy_after, error="e")
        stored = rt.fleet.read_health("mock")
        assert (stored.status, stored.consecutive_failures, stored.successes, stored.cooldown_until_ms) == (
            pure.status,
            pure.consecutive_failures,
            pure.successes,
            pure.cooldown_until_ms,
        ), step
        assert stored.average_response_ms == pytest.approx(pure.average_response_ms)


def test_secrets_never_reach_redis_logs_or_status(
    redis_url: str, installed_runtime: Any, fake_llm: FakeLLM, caplog: pytest.LogCaptureFixture
) -> None:
    from producer_tasks.state.status import snapshot
    from tests.fakellm import API_KEY

    caplog.set_level(logging.DEBUG)
    rt, rec = make_runtime(
        redis_url,
        PRODUCER_CONCURRENCY="1",
        PRODUCER_BACKOFF_BASE_S="0.001",
        PRODUCER_BLOOM_FILTER="true",
        **provider_env(fake_llm),
    )
    installed_runtime(rt)
    serve(rt, "openai")
    start(rt, weights={"openai": 1.0})
    rt.lanes.reconcile()
    assert run_next(rec) == Outcome.DELIVERED
    fake_llm.set("openai", mode="status", status=401)
    assert run_next(rec) == Outcome.FAILED
    assert health_check.delay(provider="openai").get() == "failed"
    client = rt.fleet.redis
    stored = []
    for key in client.scan_iter("*"):
        kind = client.type(key)
        if kind == "hash":
            stored.append(str(client.hgetall(key)))
        elif kind == "list":
            stored.append(str(client.lrange(key, 0, -1)))
        elif kind == "stream":
            stored.append(str(client.xrange(key)))
        elif kind == "string" and not key.startswith(rt.fleet.keys.bloom):
            stored.append(str(client.get(key)))
    everything = "\n".join(stored) + snapshot(rt.fleet).model_dump_json() + caplog.text
    assert "HTTP 401" in everything  # the failure itself is recorded ...
    assert API_KEY not in everything  # ... the key never is


def test_a_redis_blip_retries_the_cycle_instead_of_losing_it(installed_runtime: Any) -> None:
    from celery.exceptions import Retry

    from orchestrator_bridge.cli.embedded import free_port

    rt, _ = make_runtime(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    installed_runtime(rt)
    with pytest.raises(Retry) as info:
        cycle.delay(provider="mock", epoch=1, lane=0, token="t")
    assert "redis" in str(info.value.exc)
    assert 0 <= info.value.when <= 2  # the first of Celery's backoff steps, with jitter


def test_a_lone_surrogate_or_control_character_in_an_answer_loses_nothing(
    redis_url: str, installed_runtime: Any, fake_llm: FakeLLM
) -> None:
    rt, rec = make_runtime(redis_url, PRODUCER_CONCURRENCY="1", **provider_env(fake_llm))
    installed_runtime(rt)
    serve(rt, "openai")
    start(rt, weights={"openai": 1.0})
    fake_llm.set("openai", text="1. Brie\ud800 de Meaux\n2. Com\x00té\n3. \udfffGouda\x1b[31m\n4. Stilton")
    rt.lanes.reconcile()
    assert run_next(rec) == Outcome.DELIVERED
    (delivered,) = batches(rt)
    assert delivered.attributes == ["Brie de Meaux", "Comté", "Gouda[31m", "Stilton"]
    (attempt,) = rt.fleet.read_history()
    assert "\ud800" not in attempt["raw_response"] and attempt["success"]


@pytest.fixture(params=["bloom off"])
def proxied(
    request: pytest.FixtureRequest,
    redis_server: EmbeddedRedis,
    redis_url: str,
    installed_runtime: Any,
    fake_llm: FakeLLM,
) -> Iterator[tuple[Runtime, RecordingDispatcher, FaultProxy]]:
    proxy = FaultProxy(redis_server.port).start()
    bloom_on = "true" if request.param == "bloom on" else "false"
    rt, rec = make_runtime(
        proxy.url, PRODUCER_CONCURRENCY="1", PRODUCER_BLOOM_FILTER=bloom_on, **provider_env(fake_llm)
    )
    installed_runtime(rt)
    serve(rt, "openai")
    start(rt, weights={"openai": 1.0})
    rt.lanes.reconcile()
    try:
        yield rt, rec, proxy
    finally:
        proxy.stop()


def test_a_paid_for_response_survives_a_redis_outage_and_is_bought_once(
    proxied: tuple[Runtime, RecordingDispatcher, FaultProxy], fake_llm: FakeLLM
) -> None:
    rt, rec, proxy = proxied
    fake_llm.set("openai", latency_ms=1500)

    def outage() -> None:
        proxy.cut()  # Redis unreachable from the moment the call is in flight ...
        time.sleep(4)  # ... for longer than redis-py's own retries last
        proxy.restore()

    thread = call_during_request(fake_llm, outage)
    assert run_next(rec) == Outcome.DELIVERED
    thread.join()
    assert fake_llm.count() == 1  # the response was kept, not bought again
    assert len(batches(rt)) == 1
    assert rt.fleet.read_stats("openai").total_requests == 1


def test_a_lost_redis_reply_does_not_duplicate_a_batch(
    proxied: tuple[Runtime, RecordingDispatcher, FaultProxy], fake_llm: FakeLLM
) -> None:
    rt, rec, proxy = proxied
    fake_llm.set("openai", latency_ms=800)
    thread = call_during_request(fake_llm, lambda: proxy.drop_reply_to(b"EVALSHA"))  # the delivery's reply
    assert run_next(rec) == Outcome.DELIVERED
    thread.join()
    assert proxy.dropped == 1  # the fault did happen: the delivery ran, its reply never arrived
    assert len(batches(rt)) == 1  # and the resent delivery appended nothing
    assert rt.fleet.read_counters()["batches_appended"] == 1
    assert rt.fleet.read_stats("openai").total_requests == 1
    assert fake_llm.count() == 1


@pytest.mark.parametrize("proxied", ["bloom on"], indirect=True)
def test_a_lost_reply_to_the_bloom_check_loses_no_attribute(
    proxied: tuple[Runtime, RecordingDispatcher, FaultProxy], fake_llm: FakeLLM
) -> None:
    """The check set the bits but its reply never came: the retry cannot tell new from
    known, so the whole batch goes on, once, rather than being marked seen and dropped."""
    rt, rec, proxy = proxied
    fake_llm.set("openai", latency_ms=800)
    thread = call_during_request(fake_llm, lambda: proxy.drop_reply_to(b"BITFIELD"))
    assert run_next(rec) == Outcome.DELIVERED
    thread.join()
    assert proxy.dropped == 1
    (batch,) = batches(rt)
    assert len(batch.attributes) == rt.fleet.read_state().generation.batch_size
    assert bloom.contains(rt.fleet, batch.attributes) == [True] * len(batch.attributes)
    assert rt.fleet.redis.hlen(rt.fleet.keys.journal) == 0
    assert fake_llm.count() == 1
