"""Task logic in Celery's eager mode, against a real redis-server.

The dispatcher is a recorder: each test decides which recorded message runs next, so the
continuous loop is driven one cycle at a time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from orchestrator_bridge import ProviderStatus
from producer_tasks import control, healthstore, lanes, ratelimit
from producer_tasks.app import app
from producer_tasks.cycle import Outcome, Runtime
from producer_tasks.health import record_failure, record_rate_limit, record_success
from producer_tasks.records import BatchRecord, HealthRecord, LaneStatus, Phase
from producer_tasks.tasks import cycle, health_check
from tests.conftest import RecordingDispatcher, make_runtime, provider_env
from tests.fakellm import FakeLLM

QUEUED_TIMEOUT_MS = 60_000


@pytest.fixture(autouse=True)
def eager() -> Iterator[None]:
    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True
    yield
    app.conf.task_always_eager = False
    app.conf.task_eager_propagates = False


def start(
    rt: Runtime, *, weights: dict[str, float] | None = None, topic: str = "cheese", batch_size: int = 10
) -> control.ControlResult:
    result = control.start_topic(
        rt.fleet,
        rt.settings,
        topic=topic,
        prompt="List {batch_size} {topic}",
        weights=weights or {"mock": 1.0},
        temperature=0.7,
        max_tokens=200,
        batch_size=batch_size,
    )
    assert result.accepted, result.reason
    return result


def serve(rt: Runtime, *queues: str, worker: str = "w1@test") -> None:
    rt.fleet.heartbeat(worker, list(queues or ("mock",)))


def run_next(rec: RecordingDispatcher, *, worker: str = "w1@test") -> str:
    message = rec.sent.pop(0)
    return str(cycle.delay(**message).get())


def fake_calls(rt: Runtime) -> int:
    return rt.fleet.read_stats("mock").total_requests


def batches(rt: Runtime) -> list[BatchRecord]:
    entries = rt.fleet.redis.xrange(rt.fleet.keys.batches)
    return [BatchRecord.model_validate_json(fields["data"]) for _, fields in entries]


@pytest.fixture
def mock_rt(redis_url: str, installed_runtime: Any) -> tuple[Runtime, RecordingDispatcher]:
    rt, rec = make_runtime(redis_url, PRODUCER_CONCURRENCY="2")
    installed_runtime(rt)
    serve(rt, "mock")
    return rt, rec


def test_continuous_loop_delivers_and_dispatches_the_next_cycle(mock_rt: Any) -> None:
    rt, rec = mock_rt
    start(rt)
    report = lanes.reconcile(rt.fleet, rt.dispatcher, queued_timeout_ms=QUEUED_TIMEOUT_MS)
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
    assert len(history) == 6 and history[0]["success"] is True
    # a second reconcile finds every lane accounted for
    assert lanes.reconcile(rt.fleet, rt.dispatcher, queued_timeout_ms=QUEUED_TIMEOUT_MS).dispatched == []


def test_a_duplicate_or_old_message_is_a_no_op(mock_rt: Any) -> None:
    rt, rec = mock_rt
    start(rt)
    lanes.reconcile(rt.fleet, rt.dispatcher, queued_timeout_ms=QUEUED_TIMEOUT_MS)
    message = dict(rec.sent[0])
    assert run_next(rec) == Outcome.DELIVERED
    assert cycle.delay(**message).get() == Outcome.STALE  # redelivered copy
    assert len(batches(rt)) == 1


def test_stop_cancels_queued_lanes_and_waits_for_running_ones(mock_rt: Any) -> None:
    rt, rec = mock_rt
    start(rt)
    lanes.reconcile(rt.fleet, rt.dispatcher, queued_timeout_ms=QUEUED_TIMEOUT_MS)
    running, queued = rec.sent
    assert (
        lanes.transition(
            rt.fleet,
            lane=running["lane"],
            token=running["token"],
            status=LaneStatus.RUNNING,
            worker="w1@test",
            epoch=running["epoch"],
        )
        == 1
    )
    result = control.stop(rt.fleet)
    assert result.state is not None and result.state.phase is Phase.STOPPING
    assert cycle.delay(**queued).get() == Outcome.STALE  # cancelled by Stop: nothing spent
    assert rt.fleet.read_state().phase is Phase.STOPPING  # lane 0 is still in flight
    lanes.release(rt.fleet, lane=running["lane"], token=running["token"])  # its cycle ends
    assert rt.fleet.read_state().phase is Phase.STOPPED
    assert rt.fleet.view().lanes == {}


def call_during_request(fake: FakeLLM, action: Any) -> threading.Thread:
    """Run ``action`` once the fake server has received a request (it is answering slowly)."""

    def wait_then_act() -> None:
        deadline = time.monotonic() + 10
        while fake.count() == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        action()

    thread = threading.Thread(target=wait_then_act)
    thread.start()
    return thread


@pytest.fixture
def slow_openai(
    redis_url: str, installed_runtime: Any, fake_llm: FakeLLM
) -> tuple[Runtime, RecordingDispatcher]:
    rt, rec = make_runtime(redis_url, PRODUCER_CONCURRENCY="2", **provider_env(fake_llm))
    installed_runtime(rt)
    serve(rt, "openai")
    fake_llm.set("openai", latency_ms=400)
    return rt, rec


def test_stop_during_a_call_delivers_its_batch_and_starts_nothing(
    slow_openai: Any, fake_llm: FakeLLM
) -> None:
    rt, rec = slow_openai
    start(rt, weights={"openai": 1.0})
    lanes.reconcile(rt.fleet, rt.dispatcher, queued_timeout_ms=QUEUED_TIMEOUT_MS)
    stopper = call_during_request(fake_llm, lambda: control.stop(rt.fleet))
    assert run_next(rec) == Outcome.DELIVERED
    stopper.join()
    assert len(batches(rt)) == 1
    assert rt.fleet.read_state().phase is Phase.STOPPED
    assert run_next(rec) == Outcome.STALE  # sent before Stop; now a no-op
    assert rec.sent == []
    assert fake_llm.count("openai") == 1


def test_topic_switch_during_a_call_drops_its_output(slow_openai: Any, fake_llm: FakeLLM) -> None:
    rt, rec = slow_openai
    start(rt, weights={"openai": 1.0}, topic="cheese")
    lanes.reconcile(rt.fleet, rt.dispatcher, queued_timeout_ms=QUEUED_TIMEOUT_MS)
    switcher = call_during_request(fake_llm, lambda: start(rt, weights={"openai": 1.0}, topic="towns"))
    assert run_next(rec) == Outcome.DISCARDED
    switcher.join()
    assert batches(rt) == []
    assert run_next(rec) == Outcome.STALE  # the other lane's message belongs to the old topic
    fake_llm.set("openai")
    lanes.reconcile(rt.fleet, rt.dispatcher, queued_timeout_ms=QUEUED_TIMEOUT_MS)
    for _ in range(3):
        run_next(rec)
    assert len(batches(rt)) == 3
    assert {b.topic for b in batches(rt)} == {"towns"}


def test_same_topic_again_keeps_work_and_backlog(mock_rt: Any) -> None:
    rt, rec = mock_rt
    first = start(rt)
    lanes.reconcile(rt.fleet, rt.dispatcher, queued_timeout_ms=QUEUED_TIMEOUT_MS)
    run_next(rec)
    again = start(rt, batch_size=5)
    assert first.state is not None and again.state is not None
    assert again.state.epoch == first.state.epoch and not again.new_topic
    assert len(batches(rt)) == 1
    assert run_next(rec) == Outcome.DELIVERED  # the lane in flight was kept
    assert len(batches(rt)[-1].attributes) <= 5  # the new config applies


def test_backlog_bound_pauses_and_resumes(redis_url: str, installed_runtime: Any) -> None:
    rt, rec = make_runtime(redis_url, PRODUCER_CONCURRENCY="1", PRODUCER_MAX_BACKLOG="3")
    installed_runtime(rt)
    serve(rt, "mock")
    start(rt)
    lanes.reconcile(rt.fleet, rt.dispatcher, queued_timeout_ms=QUEUED_TIMEOUT_MS)
    for _ in range(3):
        assert run_next(rec) == Outcome.DELIVERED
    # the third batch filled the backlog: the lane's next cycle checks before it spends
    assert run_next(rec) == Outcome.WAITING
    assert rec.sent == []
    assert fake_calls(rt) == 3
    lane = rt.fleet.view().lanes[0]
    assert lane.status is LaneStatus.WAITING and lane.reason.startswith("backlog full")
    assert lanes.reconcile(rt.fleet, rt.dispatcher, queued_timeout_ms=QUEUED_TIMEOUT_MS).dispatched == []
    oldest = rt.fleet.redis.xrange(rt.fleet.keys.batches)[0][0]
    rt.fleet.redis.xdel(rt.fleet.keys.batches, oldest)  # the bridge drained one
    assert lanes.reconcile(rt.fleet, rt.dispatcher, queued_timeout_ms=QUEUED_TIMEOUT_MS).dispatched == [0]
    assert run_next(rec) == Outcome.DELIVERED


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
    lanes.reconcile(rt.fleet, rt.dispatcher, queued_timeout_ms=QUEUED_TIMEOUT_MS)
    for expected in ("degraded", "degraded", "unhealthy"):
        assert run_next(rec) == Outcome.FAILED
        assert rt.fleet.read_health("openai").status == expected
        time.sleep(0.02)  # the (tiny) backoff is over
        lanes.reconcile(rt.fleet, rt.dispatcher, queued_timeout_ms=QUEUED_TIMEOUT_MS)
    assert rec.sent == []  # no usable provider: the lane waits, nothing is sent
    view = rt.fleet.view()
    assert view.lanes[0].status is LaneStatus.WAITING
    assert "openai: unhealthy after 3 failures" in lanes.no_provider_reason(view)
    assert health_check.delay(provider="openai").get() == "failed"  # still down
    fake_llm.set("openai")
    assert health_check.delay(provider="openai").get() == "recovered"
    assert fake_llm.requests[-1].path.endswith("/models/gpt-4o-mini")  # no tokens spent
    assert rt.fleet.read_health("openai").status is ProviderStatus.HEALTHY
    assert lanes.reconcile(rt.fleet, rt.dispatcher, queued_timeout_ms=QUEUED_TIMEOUT_MS).dispatched == [0]
    assert run_next(rec) == Outcome.DELIVERED
    stats = rt.fleet.read_stats("openai")
    assert (stats.total_requests, stats.failed_requests, stats.successful_requests) == (4, 3, 1)


def test_429_sets_a_fleet_wide_cooldown(redis_url: str, installed_runtime: Any, fake_llm: FakeLLM) -> None:
    rt, rec = make_runtime(redis_url, PRODUCER_CONCURRENCY="1", **provider_env(fake_llm))
    installed_runtime(rt)
    serve(rt, "openai", "anthropic")
    start(rt, weights={"openai": 1.0, "anthropic": 1.0})
    fake_llm.set("openai", mode="status", status=429, retry_after="30")
    fake_llm.set("anthropic", mode="status", status=429, retry_after="30")
    lanes.reconcile(rt.fleet, rt.dispatcher, queued_timeout_ms=QUEUED_TIMEOUT_MS)
    assert run_next(rec) == Outcome.FAILED
    view = rt.fleet.view()
    limited = [p for p in ("openai", "anthropic") if view.health[p].cooldown_until_ms > view.now_ms]
    assert len(limited) == 1
    health = view.health[limited[0]]
    assert health.cooldown_until_ms - view.now_ms > 25_000
    assert (health.status, health.consecutive_failures) == (ProviderStatus.DEGRADED, 0)  # alive, just busy
    assert limited[0] not in lanes.eligible_providers(view)


def test_a_message_for_an_unusable_provider_is_redirected(redis_url: str, installed_runtime: Any) -> None:
    rt, rec = make_runtime(redis_url, PRODUCER_CONCURRENCY="1", OPENAI_API_KEY="k")
    installed_runtime(rt)
    serve(rt, "openai", "mock")
    start(rt, weights={"openai": 1.0, "mock": 1.0})
    lanes.reconcile(rt.fleet, rt.dispatcher, queued_timeout_ms=QUEUED_TIMEOUT_MS)
    rec.sent[0]["provider"] = "openai"
    rt.fleet.redis.hset(rt.fleet.keys.health("openai"), mapping={"status": "unhealthy"})
    assert run_next(rec) == Outcome.REDIRECTED
    assert rec.sent[0]["provider"] == "mock"


def test_rate_limit_is_fleet_wide(redis_url: str, installed_runtime: Any) -> None:
    rt, rec = make_runtime(redis_url, PRODUCER_CONCURRENCY="3", PRODUCER_MOCK_RPM="2")
    installed_runtime(rt)
    serve(rt, "mock")
    start(rt)
    lanes.reconcile(rt.fleet, rt.dispatcher, queued_timeout_ms=QUEUED_TIMEOUT_MS)
    outcomes = [run_next(rec) for _ in range(3)]
    assert outcomes.count(Outcome.DELIVERED) == 2
    assert outcomes.count(Outcome.WAITING) == 1
    waiting = [lane for lane in rt.fleet.view().lanes.values() if lane.status is LaneStatus.WAITING]
    assert waiting and waiting[0].reason == "rate limited (mock)"
    assert 20_000 < waiting[0].until_ms - rt.fleet.view().now_ms <= 30_000
    assert ratelimit.acquire(rt.fleet, rt.settings, "mock", tokens=1) > 0  # shared by everyone


def test_lanes_of_a_dead_worker_are_restored(mock_rt: Any) -> None:
    rt, rec = mock_rt
    start(rt)
    lanes.reconcile(rt.fleet, rt.dispatcher, queued_timeout_ms=QUEUED_TIMEOUT_MS)
    lost = rec.sent.pop(0)
    assert (
        lanes.transition(
            rt.fleet, lane=lost["lane"], token=lost["token"], status=LaneStatus.RESERVED, worker="dead@test"
        )
        == 1
    )
    report = lanes.reconcile(rt.fleet, rt.dispatcher, queued_timeout_ms=QUEUED_TIMEOUT_MS)
    assert report.dispatched == [lost["lane"]]  # dead@test never sent a heartbeat
    assert cycle.delay(**lost).get() == Outcome.STALE  # the restored old message is a no-op


def test_invalid_configuration_is_rejected_and_changes_nothing(mock_rt: Any) -> None:
    rt, _ = mock_rt
    start(rt)
    before = rt.fleet.read_state()
    cases = [
        ({"mock": -1.0}, 0.7, 100, 10, "finite number >= 0"),
        ({"mock": float("nan")}, 0.7, 100, 10, "finite number >= 0"),
        ({"openai": 1.0}, 0.7, 100, 10, "no configured provider has a weight above 0"),
        ({"mock": 0.0}, 0.7, 100, 10, "no configured provider has a weight above 0"),
        ({"mock": 1.0}, 2.5, 100, 10, "temperature"),
        ({"mock": 1.0}, float("inf"), 100, 10, "temperature"),
        ({"mock": 1.0}, 0.7, 0, 10, "max_tokens"),
        ({"mock": 1.0}, 0.7, 10**9, 10, "max_tokens"),
        ({"mock": 1.0}, 0.7, 100, 0, "batch_size"),
        ({"mock": 1.0}, 0.7, 100, 100_000, "batch_size"),
    ]
    for weights, temperature, max_tokens, batch_size, reason in cases:
        result = control.start_topic(
            rt.fleet,
            rt.settings,
            topic="other",
            prompt="p",
            weights=weights,
            temperature=temperature,
            max_tokens=max_tokens,
            batch_size=batch_size,
        )
        assert not result.accepted and reason in result.reason
        if "weight" in reason:
            update = control.update_configuration(rt.fleet, rt.settings, weights=weights)
            assert not update.accepted and reason in update.reason
    assert rt.fleet.read_state() == before
    ignored = control.update_configuration(rt.fleet, rt.settings, weights={"mock": 2.0, "llama": 1.0})
    assert ignored.accepted and any("'llama' ignored" in w for w in ignored.warnings)
    assert rt.fleet.read_state().weights == {"mock": 2.0}


def test_outcome_script_follows_the_pure_health_rules(mock_rt: Any) -> None:
    rt, _ = mock_rt
    sequence = ["fail", "429", "fail", "ok", "fail", "fail", "fail", "429", "ok", "429", "ok", "fail"]
    pure = HealthRecord()
    for i, step in enumerate(sequence):
        ok, limited = step == "ok", step == "429"
        cooldown = 1000 * i if limited else 0
        healthstore.record_outcome(
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


def test_adaptive_selection_favours_the_provider_that_brings_new_attributes(
    redis_url: str, installed_runtime: Any, fake_llm: FakeLLM
) -> None:
    fake_llm.set("openai", vocabulary=20, topic="cheese")  # repeats itself at once
    fake_llm.set("anthropic", vocabulary=100_000, topic="cheese")
    rt, rec = make_runtime(
        redis_url,
        PRODUCER_CONCURRENCY="1",
        PRODUCER_SELECTION="adaptive",
        PRODUCER_BLOOM_FILTER="true",
        **provider_env(fake_llm),
    )
    installed_runtime(rt)
    serve(rt, "openai", "anthropic")
    start(rt, weights={"openai": 1.0, "anthropic": 1.0})
    lanes.reconcile(rt.fleet, rt.dispatcher, queued_timeout_ms=QUEUED_TIMEOUT_MS, adaptive=True)
    for _ in range(150):
        serve(rt, "openai", "anthropic")  # the worker's heartbeat, as its thread would
        run_next(rec)
    stats = {p: rt.fleet.read_stats(p) for p in ("openai", "anthropic")}
    assert stats["openai"].ema_novelty < 0.3 < stats["anthropic"].ema_novelty
    late = [r.api for r in fake_llm.requests[-60:]]
    assert late.count("anthropic") > 2 * late.count("openai")  # static would be about even
    assert late.count("openai") > 0  # the floor keeps it selectable
    assert stats["anthropic"].unique_contributions > stats["openai"].unique_contributions


def test_secrets_never_reach_redis_logs_or_status(
    redis_url: str, installed_runtime: Any, fake_llm: FakeLLM, caplog: pytest.LogCaptureFixture
) -> None:
    from producer_tasks.status import snapshot
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
    lanes.reconcile(rt.fleet, rt.dispatcher, queued_timeout_ms=QUEUED_TIMEOUT_MS)
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


def test_an_unexpected_error_parks_the_lane_instead_of_stranding_it(
    redis_url: str, installed_runtime: Any, fake_llm: FakeLLM, caplog: pytest.LogCaptureFixture
) -> None:
    rt, rec = make_runtime(redis_url, PRODUCER_CONCURRENCY="1", **provider_env(fake_llm))
    installed_runtime(rt)
    serve(rt, "openai")
    start(rt, weights={"openai": 1.0})
    lanes.reconcile(rt.fleet, rt.dispatcher, queued_timeout_ms=QUEUED_TIMEOUT_MS)
    message = rec.sent.pop(0)
    rt.fleet.redis.hset(rt.fleet.keys.state, "data", "{not json")  # a corrupted state record
    assert cycle.delay(**message).get() == "error"
    assert "failed unexpectedly" in caplog.text
    raw = rt.fleet.redis.hget(rt.fleet.keys.lanes, "0")  # reconcile will pick the lane up again
    assert '"status":"waiting"' in raw and "ValidationError" in raw
    assert fake_llm.count() == 0


def test_a_redis_blip_retries_the_cycle_instead_of_losing_it(installed_runtime: Any) -> None:
    from celery.exceptions import Retry

    from producer_tasks.embedded import free_port

    rt, _ = make_runtime(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    installed_runtime(rt)
    with pytest.raises(Retry) as info:
        cycle.delay(provider="mock", epoch=1, lane=0, token="t")
    assert "redis" in str(info.value.exc) and info.value.when == 1
