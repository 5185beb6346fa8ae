"""Lanes in Celery's eager mode, against a real redis-server: tokens, backlog, redirects,
restoring lost lanes, adaptive selection, never a stranded lane.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from producer_tasks import lanes
from producer_tasks.generation.cycle import Outcome
from producer_tasks.records import LaneStatus, LLMResponse, Phase
from producer_tasks.state import control, outcomes
from producer_tasks.worker.heartbeat import Heartbeat
from producer_tasks.worker.tasks import cycle
from tests.conftest import make_runtime, provider_env
from tests.fakellm import FakeLLM
from tests.harness import wait_for
from tests.redis.eager import batches, fake_calls, run_next, serve, start

pytestmark = pytest.mark.usefixtures("eager")


def test_a_duplicate_or_old_message_is_a_no_op(mock_rt: Any) -> None:
    rt, rec = mock_rt
    start(rt)
    rt.lanes.reconcile()
    message = dict(rec.sent[0])
    assert run_next(rec) == Outcome.DELIVERED
    assert cycle.delay(**message).get() == Outcome.STALE  # redelivered copy
    assert len(batches(rt)) == 1


def test_backlog_bound_pauses_and_resumes(redis_url: str, installed_runtime: Any) -> None:
    rt, rec = make_runtime(redis_url, PRODUCER_CONCURRENCY="1", PRODUCER_MAX_BACKLOG="3")
    installed_runtime(rt)
    serve(rt, "mock")
    start(rt)
    rt.lanes.reconcile()
    for _ in range(3):
        assert run_next(rec) == Outcome.DELIVERED
    # the third batch filled the backlog: the lane's next cycle checks before it spends
    assert run_next(rec) == Outcome.WAITING
    assert rec.sent == []
    assert fake_calls(rt) == 3
    lane = rt.fleet.view().lanes[0]
    assert lane.status is LaneStatus.WAITING and lane.reason.startswith("backlog full")
    assert rt.lanes.reconcile().dispatched == []
    oldest = rt.fleet.redis.xrange(rt.fleet.keys.batches)[0][0]
    rt.fleet.redis.xdel(rt.fleet.keys.batches, oldest)  # the bridge drained one
    assert rt.lanes.reconcile().dispatched == [0]
    assert run_next(rec) == Outcome.DELIVERED


def test_a_message_for_an_unusable_provider_is_redirected_never_called(
    redis_url: str, installed_runtime: Any, fake_llm: FakeLLM
) -> None:
    """The claim checks the provider's health atomically with the lane: a message for a
    provider that went Unhealthy (or is cooling down) after its dispatch never calls it."""
    rt, rec = make_runtime(redis_url, PRODUCER_CONCURRENCY="1", **provider_env(fake_llm))
    installed_runtime(rt)
    serve(rt, "openai", "mock")
    start(rt, weights={"openai": 1.0, "mock": 1.0})
    rt.lanes.reconcile()
    rec.sent[0]["provider"] = "openai"
    rt.fleet.redis.hset(rt.fleet.keys.health("openai"), mapping={"status": "unhealthy"})
    assert run_next(rec) == Outcome.REDIRECTED
    assert fake_llm.count() == 0 and rec.sent[0]["provider"] == "mock"
    # cooling down after a 429 is refused the same way (nothing changed); a usable one is claimed
    token = rt.fleet.view().lanes[0].token
    claim = {"lane": 0, "token": token, "worker": "w1@test", "epoch": rt.fleet.read_state().epoch}
    rt.fleet.redis.hset(rt.fleet.keys.health("mock"), mapping={"cooldown_until_ms": 2**50})
    assert rt.fleet.run(rt.lanes.claim_call(**claim, provider="mock")) == [-3]
    assert rt.fleet.view().lanes[0].status is LaneStatus.QUEUED
    rt.fleet.redis.hdel(rt.fleet.keys.health("mock"), "cooldown_until_ms")
    assert rt.fleet.run(rt.lanes.claim_call(**claim, provider="mock")) == [1]
    assert rt.fleet.view().lanes[0].status is LaneStatus.RUNNING


def test_lanes_of_a_dead_worker_are_restored(mock_rt: Any) -> None:
    rt, rec = mock_rt
    start(rt)
    rt.lanes.reconcile()
    lost = rec.sent.pop(0)
    assert (
        rt.fleet.transition(
            lane=lost["lane"], token=lost["token"], status=LaneStatus.RUNNING, worker="dead@test"
        )
        == 1
    )
    report = rt.lanes.reconcile()
    assert report.dispatched == [lost["lane"]]  # dead@test never sent a heartbeat
    assert cycle.delay(**lost).get() == Outcome.STALE  # the restored old message is a no-op


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
    rt.lanes.reconcile()
    for _ in range(150):
        serve(rt, "openai", "anthropic")  # the worker's heartbeat, as its thread would
        run_next(rec)
    stats = {p: rt.fleet.read_stats(p) for p in ("openai", "anthropic")}
    assert stats["openai"].ema_novelty < 0.3 < stats["anthropic"].ema_novelty
    late = [r.api for r in fake_llm.requests[-60:]]
    assert late.count("anthropic") > 2 * late.count("openai")  # static would be about even
    assert late.count("openai") > 0  # the floor keeps it selectable
    assert stats["anthropic"].unique_contributions > stats["openai"].unique_contributions


def test_an_unexpected_error_parks_the_lane_instead_of_stranding_it(
    redis_url: str, installed_runtime: Any, fake_llm: FakeLLM, caplog: pytest.LogCaptureFixture
) -> None:
    rt, rec = make_runtime(redis_url, PRODUCER_CONCURRENCY="1", **provider_env(fake_llm))
    installed_runtime(rt)
    serve(rt, "openai")
    start(rt, weights={"openai": 1.0})
    rt.lanes.reconcile()
    message = rec.sent.pop(0)
    rt.fleet.redis.hset(rt.fleet.keys.state, "data", "{not json")  # a corrupted state record
    assert cycle.delay(**message).get() == "error"
    assert "failed unexpectedly" in caplog.text
    raw = rt.fleet.redis.hget(rt.fleet.keys.lanes, "0")  # reconcile will pick the lane up again
    assert '"status":"waiting"' in raw and "ValidationError" in raw
    assert fake_llm.count() == 0


def test_a_worker_restarted_under_the_same_name_does_not_inherit_its_old_lanes(mock_rt: Any) -> None:
    rt, rec = mock_rt
    start(rt)
    rt.lanes.reconcile()
    held = rec.sent.pop(0)
    other = rec.sent.pop(0)
    for message, status in ((held, LaneStatus.RUNNING), (other, LaneStatus.RESERVED)):
        rt.fleet.transition(
            lane=message["lane"], token=message["token"], status=status, worker="w9@host#old-life"
        )
    rt.fleet.heartbeat("w9@host#old-life", ["mock"])
    assert rt.lanes.reconcile().dispatched == []  # alive: its lanes are its own
    rt.fleet.unregister("w9@host#old-life")  # kill -9 leaves it registered; expiry does the same
    rt.fleet.heartbeat("w9@host#new-life", ["mock"])  # restarted at once, same -n name
    assert sorted(rt.lanes.reconcile().dispatched) == sorted([held["lane"], other["lane"]])
    assert cycle.delay(**held).get() == Outcome.STALE


def test_a_lane_busy_longer_than_a_call_can_take_is_restored(
    redis_url: str, installed_runtime: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lanes, "BUSY_GRACE_S", 0.0)
    rt, rec = make_runtime(redis_url, PRODUCER_CONCURRENCY="1", PRODUCER_REQUEST_TIMEOUT_S="0.5")
    installed_runtime(rt)
    serve(rt, "mock")
    start(rt)
    rt.lanes.reconcile()
    stuck = rec.sent.pop(0)
    # a live worker whose message was rejected during a Redis outage: RUNNING, never finishing
    began = time.monotonic()
    rt.fleet.transition(lane=stuck["lane"], token=stuck["token"], status=LaneStatus.RUNNING, worker="w1@test")
    assert rt.lanes.reconcile().dispatched == []  # not before the request timeout has passed
    wait_for(lambda: rt.lanes.reconcile().dispatched == [stuck["lane"]], interval_s=0.05, what="re-dispatch")
    assert time.monotonic() - began >= 0.45  # the request timeout: 0.5 s after it started running
    again = rec.sent.pop(0)  # stuck once more, then Stop: it still reaches Stopped
    rt.fleet.transition(lane=again["lane"], token=again["token"], status=LaneStatus.RUNNING, worker="w1@test")
    control.stop(rt.fleet)
    assert rt.fleet.read_state().phase is Phase.STOPPING

    def stopped() -> bool:
        rt.lanes.reconcile()
        return rt.fleet.read_state().phase is Phase.STOPPED

    wait_for(stopped, interval_s=0.05, what="Stopped")


def test_a_draining_worker_stays_alive_for_its_lanes_but_takes_no_new_ones(mock_rt: Any) -> None:
    rt, rec = mock_rt
    rt.fleet.unregister("w1@test")  # only the heartbeat's worker serves "mock" here
    heartbeat = Heartbeat(rt, worker="w2@test#life", queues=["mock"])
    heartbeat.tick()
    start(rt)
    rt.lanes.reconcile()
    held = rec.sent.pop(0)
    rt.fleet.transition(
        lane=held["lane"], token=held["token"], status=LaneStatus.RUNNING, worker="w2@test#life"
    )
    heartbeat.drain()  # SIGTERM: warm shutdown begins, the cycle still runs
    heartbeat.tick()
    assert "w2@test#life" in rt.fleet.live_workers() and rt.fleet.serving_workers("mock") == 0
    assert held["lane"] not in rt.lanes.reconcile().dispatched  # its running lane is not restored
    heartbeat.stop()  # the pool finished: gone
    assert "w2@test#life" not in rt.fleet.live_workers()


def test_the_beat_lease_has_one_holder_renews_expires_and_hands_over(mock_rt: Any) -> None:
    rt, _ = mock_rt
    fleet, key = rt.fleet, rt.fleet.keys.beat_lease
    assert fleet.hold_lease(key, "beat-a", 300)
    assert not fleet.hold_lease(key, "beat-b", 300)  # a standby never takes a held lease
    assert fleet.hold_lease(key, "beat-a", 60_000)  # renewed: its holder extends it
    assert fleet.redis.pttl(key) > 30_000
    assert not fleet.hold_lease(key, "beat-b", 300)
    assert fleet.hold_lease(key, "beat-a", 200)  # renewed a last time; then a stops renewing (died)
    wait_for(lambda: fleet.hold_lease(key, "beat-b", 300), timeout_s=10, interval_s=0.02, what="the lease")
    assert not fleet.hold_lease(key, "beat-a", 300)  # a resumed old leader does not schedule
    assert not fleet.hold_lease(key, "beat-a", 0)  # giving up a lease one does not hold: no-op
    assert fleet.redis.get(key) == "beat-b"
    fleet.hold_lease(key, "beat-b", 0)  # warm shutdown: handed over at once
    assert fleet.hold_lease(key, "beat-a", 300)


def test_adaptive_cost_selection_prefers_the_cheaper_provider_for_the_same_novelty(
    redis_url: str, installed_runtime: Any, fake_llm: FakeLLM
) -> None:
    """Built-in prices: gpt-4o-mini (US$0.15/0.60) against claude-haiku-4-5 (US$1/5) per
    million tokens; the same answers from both, so the same novelty."""
    rt, _ = make_runtime(redis_url, PRODUCER_SELECTION="adaptive-cost", **provider_env(fake_llm))
    installed_runtime(rt)
    serve(rt, "openai", "anthropic")
    start(rt, weights={"openai": 1.0, "anthropic": 1.0})
    answer = LLMResponse(
        content="x", prompt_tokens=1000, completion_tokens=1000, model="m", response_time_ms=5
    )
    for provider in ("openai", "anthropic"):
        outcomes.record_outcome(
            rt.fleet, rt.settings, provider, success=True, response=answer, candidates=10, unique=5
        )
    view = rt.fleet.view(with_stats=True)
    per_dollar = lanes.selection_weights(view, adaptive=True, per_dollar=True)
    per_request = lanes.selection_weights(view, adaptive=True)
    assert per_request["openai"] == pytest.approx(per_request["anthropic"])
    # US$0.00075 against US$0.006 a call: anthropic's novelty per dollar is 1/8 of openai's
    assert per_dollar["openai"] == 1.0 and per_dollar["anthropic"] == pytest.approx(0.125)
    assert rt.lanes.per_dollar


def test_scripts_run_by_sha_are_reloaded_after_the_server_lost_them(mock_rt: Any) -> None:
    """Fleet.run sends scripts by EVALSHA alone; after SCRIPT FLUSH (as after a restart) the
    ones the server does not know are loaded and run once, the plain commands ran once."""
    from producer_tasks.state.scripts import CommandCall, Lease

    rt, _ = mock_rt
    fleet, key = rt.fleet, rt.fleet.keys.beat_lease
    lease = Lease(lease_key=key, owner="beat-a", ttl_ms=60_000).call()
    assert fleet.run(lease, CommandCall(("INCR", "counter"))) == [1, 1]
    fleet.redis.script_flush()
    assert not any(fleet.redis.script_exists(fleet.scripts["lease"].sha))
    other = Lease(lease_key=key, owner="beat-b", ttl_ms=60_000).call()
    assert fleet.run(other, CommandCall(("INCR", "counter")), lease) == [0, 2, 1]  # b refused, a renews
    assert fleet.redis.get("counter") == "2"  # the command was not repeated
    assert all(fleet.redis.script_exists(fleet.scripts["lease"].sha))
    assert fleet.redis.get(key) == "beat-a"


def test_an_assign_retried_after_a_lost_reply_still_counts_as_assigned(mock_rt: Any) -> None:
    """The next cycle's token is assigned in the delivery's pipeline, which is retried when
    Redis does not answer: a second run of the same assign call reports it assigned (its
    message is then sent once), a different token on the same lane still fails."""
    rt, rec = mock_rt
    start(rt, weights={"mock": 1.0})
    rt.lanes.reconcile()
    lane = rec.sent[0]["lane"]
    current = rt.fleet.view().lanes[lane].token
    epoch = rt.fleet.read_state().epoch
    token, call = rt.fleet.assign_call(lane=lane, expected=current, provider="mock", epoch=epoch)
    assert rt.fleet.run(call) == [1]
    assert rt.fleet.run(call) == [1]  # the retry
    assert rt.fleet.view().lanes[lane].token == token
    _, other = rt.fleet.assign_call(lane=lane, expected=current, provider="mock", epoch=epoch)
    assert rt.fleet.run(other) == [0]  # the old token is gone: compare-and-set fails
