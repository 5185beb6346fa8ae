"""The control API (start, update, stop) against a real redis-server, with cycles in flight."""

from __future__ import annotations

from typing import Any

import pytest

from producer_tasks.generation.cycle import Outcome
from producer_tasks.records import LaneStatus, Phase
from producer_tasks.state import control
from producer_tasks.worker.tasks import cycle
from tests.conftest import make_runtime
from tests.fakellm import FakeLLM
from tests.redis.eager import batches, call_during_request, run_next, start

pytestmark = pytest.mark.usefixtures("eager")


def test_stop_cancels_queued_lanes_and_waits_for_running_ones(mock_rt: Any) -> None:
    rt, rec = mock_rt
    assert rt.fleet.read_phase() is Phase.IDLE  # what the bridge polls: the phase alone
    start(rt)
    assert rt.fleet.read_phase() is Phase.RUNNING
    rt.lanes.reconcile()
    running, queued = rec.sent
    assert (
        rt.fleet.transition(
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
    assert rt.fleet.read_state().phase is rt.fleet.read_phase() is Phase.STOPPING  # lane 0 in flight
    rt.lanes.release(lane=running["lane"], token=running["token"])  # its cycle ends
    assert rt.fleet.read_state().phase is rt.fleet.read_phase() is Phase.STOPPED
    assert rt.fleet.view().lanes == {}


def test_stop_during_a_call_delivers_its_batch_and_starts_nothing(
    slow_openai: Any, fake_llm: FakeLLM
) -> None:
    rt, rec = slow_openai
    start(rt, weights={"openai": 1.0})
    rt.lanes.reconcile()
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
    rt.lanes.reconcile()
    switcher = call_during_request(fake_llm, lambda: start(rt, weights={"openai": 1.0}, topic="towns"))
    assert run_next(rec) == Outcome.DISCARDED
    switcher.join()
    assert batches(rt) == []
    assert run_next(rec) == Outcome.STALE  # the other lane's message belongs to the old topic
    fake_llm.set("openai")
    rt.lanes.reconcile()
    for _ in range(3):
        run_next(rec)
    assert len(batches(rt)) == 3
    assert {b.topic for b in batches(rt)} == {"towns"}


def test_same_topic_again_keeps_work_and_backlog(mock_rt: Any) -> None:
    rt, rec = mock_rt
    first = start(rt)
    rt.lanes.reconcile()
    run_next(rec)
    again = start(rt, batch_size=5)
    assert first.state is not None and again.state is not None
    assert again.state.epoch == first.state.epoch and not again.new_topic
    assert len(batches(rt)) == 1
    assert run_next(rec) == Outcome.DELIVERED  # the lane in flight was kept
    assert len(batches(rt)[-1].attributes) <= 5  # the new config applies


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
    assert ignored.accepted and ignored.warnings == (
        "weights ignored for 1 provider(s) not configured in this deployment: 'llama'",
    )
    assert rt.fleet.read_state().weights == {"mock": 2.0}


def test_what_an_orchestrator_may_make_us_spend_is_bounded_by_settings(
    redis_url: str, installed_runtime: Any
) -> None:
    rt, _ = make_runtime(
        redis_url,
        PRODUCER_MAX_TOKENS_LIMIT="500",
        PRODUCER_MAX_BATCH_SIZE="30",
        PRODUCER_MAX_PROMPT_CHARS="1000",
    )
    installed_runtime(rt)

    def ask(
        *, prompt: str = "List {topic}", max_tokens: int = 500, batch_size: int = 30
    ) -> control.ControlResult:
        return control.start_topic(
            rt.fleet,
            rt.settings,
            topic="cheese",
            prompt=prompt,
            weights={"mock": 1.0},
            temperature=0.5,
            max_tokens=max_tokens,
            batch_size=batch_size,
        )

    assert "PRODUCER_MAX_TOKENS_LIMIT" in ask(max_tokens=501).reason
    assert "PRODUCER_MAX_BATCH_SIZE" in ask(batch_size=31).reason
    assert "PRODUCER_MAX_PROMPT_CHARS" in ask(prompt="x" * 1001).reason
    assert rt.fleet.read_state().topic == ""  # nothing was applied
    assert ask().accepted  # at the limits: accepted
    update = control.update_configuration(rt.fleet, rt.settings, prompt="y" * 1001)
    assert not update.accepted and "PRODUCER_MAX_PROMPT_CHARS" in update.reason
    assert rt.fleet.read_state().prompt == "List {topic}"
