"""Demand-driven autoscaling: slots wanted per provider against slots served (real Redis)."""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

import pytest

from orchestrator_bridge.cli.embedded import free_port
from orchestrator_bridge.metrics import serve_metrics
from producer_tasks import autoscaling
from producer_tasks.state import control, outcomes
from tests.conftest import make_runtime, provider_env
from tests.fakellm import FakeLLM
from tests.redis.eager import run_next, serve, start

pytestmark = pytest.mark.usefixtures("eager")


def demand(rt: Any) -> dict[str, tuple[int, int, int]]:
    wanted = autoscaling.demand(rt.fleet.view(), rt.fleet.serving_slots())
    return {p: (d.demand_slots, d.slots, d.lanes_waiting_for_slot) for p, d in wanted.items()}


def test_demand_follows_weights_health_backlog_and_phase(
    redis_url: str, installed_runtime: Any, fake_llm: FakeLLM
) -> None:
    rt, _ = make_runtime(redis_url, PRODUCER_CONCURRENCY="8", **provider_env(fake_llm))
    installed_runtime(rt)
    assert demand(rt)["openai"] == (0, 0, 0)  # idle: nothing wanted
    rt.fleet.heartbeat("w1@a", ["openai"], slots=2)
    start(rt, weights={"openai": 3.0, "anthropic": 1.0})
    rt.lanes.reconcile()
    seen = demand(rt)
    # busy: its weighted share of the 8 lanes, whether or not a worker serves it yet
    # (anthropic has none: an autoscaler grows it from zero); openai's 6 lanes wait for its 2 slots
    assert seen["openai"][:2] == (6, 2) and seen["anthropic"][:2] == (2, 0)
    assert seen["openai"][2] == 8  # no worker serves anthropic, so every lane went to openai's queue
    assert seen["mock"] == (0, 0, 0)  # weight 0
    rt.fleet.heartbeat("w2@b", ["openai", "anthropic"], slots=32)
    assert demand(rt)["openai"][1] == 34 and demand(rt)["anthropic"][1] == 32
    for _ in range(rt.settings.unhealthy_after):
        outcomes.record_outcome(rt.fleet, rt.settings, "anthropic", success=False, error="HTTP 500")
    assert demand(rt)["openai"][0] == 8 and demand(rt)["anthropic"][0] == 1  # one slot to probe it
    rt.fleet.redis.hset(
        rt.fleet.keys.state,
        "data",
        rt.fleet.read_state().model_copy(update={"max_backlog": 1}).model_dump_json(),
    )
    rt.fleet.redis.xadd(rt.fleet.keys.batches, {"data": "{}", "epoch": "0"})
    assert demand(rt)["openai"][0] == 0  # backlog full: generation paused, shrink to the minimum
    control.stop(rt.fleet)
    assert demand(rt)["openai"][0] == demand(rt)["anthropic"][0] == 0  # stopped


def test_slots_of_a_worker_that_stopped_heart_beating_are_forgotten(
    redis_url: str, installed_runtime: Any
) -> None:
    rt, _ = make_runtime(redis_url, PRODUCER_LANE_LEASE_S="0.2")
    installed_runtime(rt)
    rt.fleet.heartbeat("gone@a", ["mock"], slots=16)
    serve(rt, "mock")  # w1@test: one slot (it did not say)
    assert rt.fleet.serving_slots()["mock"] == 17
    time.sleep(0.3)
    serve(rt, "mock")
    assert rt.fleet.serving_slots()["mock"] == 1  # only live workers count
    rt.fleet.prune_slots()
    assert set(rt.fleet.redis.hkeys(rt.fleet.keys.worker_slots)) == set()  # w1 never said its slots
    rt.fleet.heartbeat("w3@c", ["mock"], slots=4)
    rt.fleet.unregister("w3@c")
    assert not rt.fleet.redis.hexists(rt.fleet.keys.worker_slots, "w3@c")


def test_autoscaling_endpoint_and_gauges(redis_url: str, installed_runtime: Any) -> None:
    rt, _ = make_runtime(redis_url, PRODUCER_CONCURRENCY="5")
    installed_runtime(rt)
    rt.fleet.heartbeat("w1@a", ["mock"], slots=2)
    start(rt)
    rt.lanes.reconcile()
    port = free_port()
    server = serve_metrics(rt.fleet, "127.0.0.1", port)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/autoscaling", timeout=10) as answer:
            assert answer.headers["Content-Type"] == "application/json"
            body = json.loads(answer.read())
        assert body["phase"] == "running"
        assert body["providers"]["mock"] == {
            "demand_slots": 5,
            "slots": 2,
            "lanes_waiting_for_slot": 5,
            "status": "unknown",
        }
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
            text = answer.read().decode()
        assert 'producer_provider_demand_slots{producer_id="producer-1",provider="mock"} 5.0' in text
        assert 'producer_provider_slots{producer_id="producer-1",provider="mock"} 2.0' in text
    finally:
        server.close()


def test_the_autoscalers_decision_on_real_fleet_states(redis_url: str, installed_runtime: Any) -> None:
    """KEDA's formula (ceil(demand_slots / slots per worker)) against the workers there are:
    a busy fleet with enough slots keeps them, lanes waiting for slots grow it, a stopped or
    backlogged fleet shrinks it to its minimum."""
    rt, rec = make_runtime(redis_url, PRODUCER_CONCURRENCY="8")
    installed_runtime(rt)

    def decision(per_worker: int) -> tuple[int, int]:
        (wanted,) = [
            d for p, d in autoscaling.demand(rt.fleet.view(), rt.fleet.serving_slots()).items() if p == "mock"
        ]
        return autoscaling.desired_replicas(wanted, per_worker), wanted.lanes_waiting_for_slot

    rt.fleet.heartbeat("big@a", ["mock"], slots=8)  # one worker, -c 8
    start(rt)
    rt.lanes.reconcile()
    for _ in range(8):  # every lane taken by that worker and running
        run_next(rec)
    assert decision(8)[0] == 1  # busy, enough slots: stays at one replica
    rt.fleet.unregister("big@a")
    rt.fleet.heartbeat("small@b", ["mock"], slots=2)  # replaced by a worker with -c 2
    desired, waiting = decision(2)
    assert desired == 4 and waiting == 8  # 8 lanes queued for 2 slots: grow to 4 such workers
    rt.fleet.redis.hset(
        rt.fleet.keys.state,
        "data",
        rt.fleet.read_state().model_copy(update={"max_backlog": 1}).model_dump_json(),
    )
    assert rt.fleet.backlog() >= 1  # the batches just delivered
    assert decision(2)[0] == 0  # backlogged: generation paused, shrink to the minimum
    control.stop(rt.fleet)
    assert decision(2)[0] == 0  # stopped
