"""The prompt cap covers the prompt as it is sent, not only the template (issue 30): a
template of thousands of ``{topic}`` with a long topic is refused when the orchestrator sets
it, counted without building it; a worker with a smaller cap parks the lane, sends nothing."""

from __future__ import annotations

import tracemalloc
from typing import Any

import pytest

from producer_tasks.generation.cycle import Outcome
from producer_tasks.generation.prompt import build_prompt, filled_length
from producer_tasks.records import LaneStatus
from producer_tasks.state import control
from tests.conftest import make_runtime
from tests.redis.eager import run_next, serve

pytestmark = [pytest.mark.usefixtures("eager"), pytest.mark.adversarial]
TOPIC = "t" * 10_000
EXPLOSIVE = "{topic}" * 2_857  # 19,999 characters: within the cap as a template


def start_with(rt: Any, prompt: str, topic: str = TOPIC) -> control.ControlResult:
    return control.start_topic(
        rt.fleet, rt.settings, topic=topic, prompt=prompt, weights={"mock": 1.0},
        temperature=0.7, max_tokens=200, batch_size=10,
    )  # fmt: skip


def test_a_template_that_explodes_with_its_topic_is_refused_without_being_built(
    redis_url: str, installed_runtime: Any
) -> None:
    rt, _ = make_runtime(redis_url)
    installed_runtime(rt)
    tracemalloc.start()
    try:
        result = start_with(rt, EXPLOSIVE)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert not result.accepted and "PRODUCER_MAX_PROMPT_CHARS" in (result.reason or "")
    assert peak < 2_000_000, peak  # the 28.6-million-character prompt was counted, not built
    assert rt.fleet.read_state().topic == ""  # nothing changed


def test_an_update_is_checked_against_the_current_topic(redis_url: str, installed_runtime: Any) -> None:
    rt, _ = make_runtime(redis_url)
    installed_runtime(rt)
    assert start_with(rt, "List {batch_size} {topic}").accepted
    refused = control.update_configuration(rt.fleet, rt.settings, prompt=EXPLOSIVE)
    assert not refused.accepted and "filled in with the topic" in (refused.reason or "")
    assert rt.fleet.read_state().prompt == "List {batch_size} {topic}"  # a rejected update changes nothing


def test_filled_length_is_the_built_length() -> None:
    for template, topic in (
        ("List {batch_size} {topic}", "cheese"),
        ("{topic}{batch_size}{topic}", "{batch_size}"),
    ):
        built = build_prompt(template, topic=topic, batch_size=200)
        assert filled_length(template, topic=topic, batch_size=200) == len(built)
    assert "{batch_size}" in build_prompt("{topic}", topic="{batch_size}", batch_size=3)  # one pass


def test_a_worker_with_a_smaller_cap_parks_the_lane_and_calls_nothing(
    redis_url: str, installed_runtime: Any
) -> None:
    bridge_side, _ = make_runtime(redis_url)
    assert start_with(bridge_side, "List {batch_size} {topic}", topic="x" * 3000).accepted
    worker_side, rec = make_runtime(redis_url, PRODUCER_MAX_PROMPT_CHARS="1000")
    installed_runtime(worker_side)
    serve(worker_side, "mock")
    worker_side.lanes.reconcile()
    assert run_next(rec) == Outcome.WAITING
    waiting = [lane for lane in worker_side.fleet.view().lanes.values() if lane.status is LaneStatus.WAITING]
    assert waiting and all("PRODUCER_MAX_PROMPT_CHARS" in lane.reason for lane in waiting)
    assert worker_side.fleet.read_stats("mock").total_requests == 0
