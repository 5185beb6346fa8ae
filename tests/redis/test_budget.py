"""PRODUCER_BUDGET_USD: enforced atomically at the moment a call would start (real Redis,
the official SDK against the fake server, Celery in eager mode)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from orchestrator_bridge.protocol.codec import decode, encode
from orchestrator_bridge.protocol.framing import frame, read_frame
from orchestrator_bridge.protocol.messages import ErrorStatus, ProducerState, ProducerStatus
from producer_tasks.generation.cycle import Outcome
from producer_tasks.records import Phase
from producer_tasks.state import control
from producer_tasks.state.status import snapshot
from tests.conftest import make_runtime, provider_env
from tests.fakellm import FakeLLM
from tests.redis.eager import begin, run_next, start
from tests.redis.test_bridge import START, running_bridge, status_matching

# the fake server reports 11 prompt and 42 completion tokens per call: US$1.10 a call here
PRICED = {"PRODUCER_OPENAI_PRICE_INPUT_PER_MTOK": "100000", "PRODUCER_OPENAI_PRICE_OUTPUT_PER_MTOK": "0"}


@pytest.mark.usefixtures("eager")
def test_no_call_starts_once_the_budget_is_spent_and_the_fleet_stops(
    redis_url: str, installed_runtime: Any, fake_llm: FakeLLM
) -> None:
    rt, rec = make_runtime(
        redis_url, PRODUCER_CONCURRENCY="1", PRODUCER_BUDGET_USD="3", **PRICED, **provider_env(fake_llm)
    )
    installed_runtime(rt)
    begin(rt, "openai")
    outcomes = [run_next(rec) for _ in range(4) if rec.sent]
    # US$0, 1.10, 2.20 spent before calls 1-3: they go; 3.30 >= 3 before the 4th: it does not
    assert outcomes == [Outcome.DELIVERED] * 3 + [Outcome.STOPPED]
    assert fake_llm.count("openai", kind="/chat/completions") == 3  # counted at the server
    assert rec.sent == []
    assert rt.fleet.read_state().phase is Phase.STOPPED  # Stop reached Stopped
    status = snapshot(rt.fleet)
    assert status.budget_reached and status.budget_usd == 3 and status.spent_usd == pytest.approx(3.3)
    assert status.providers["openai"].cost_usd == pytest.approx(3.3)
    # the orchestrator starts the topic again: still no call, stopped again
    start(rt, weights={"openai": 1.0})
    rt.lanes.reconcile()
    assert run_next(rec) == Outcome.STOPPED
    assert fake_llm.count("openai", kind="/chat/completions") == 3
    assert rt.fleet.read_state().phase is Phase.STOPPED


async def test_the_bridge_reports_the_budget_stop_once(redis_url: str) -> None:
    async with running_bridge(redis_url, PRODUCER_BUDGET_USD="2") as setup:
        fleet = setup.fleet
        reader, writer = await setup.orchestrator.connection()
        writer.write(frame(encode(START)))
        await status_matching(reader, ProducerState.RUNNING)
        fleet.redis.hset(fleet.keys.spend, mapping={"usd": "2.5", "reached_ms": "1", "budget": "2"})
        control.stop(fleet)  # what the cycle that found the budget spent does
        error = await status_matching(reader, ErrorStatus)
        assert isinstance(error.status, ErrorStatus)
        assert "budget reached: spent US$2.5000 of US$2" in error.status.reason
        after = await status_matching(reader, ProducerState.STOPPED)  # then the phase again, once
        assert after.status is ProducerState.STOPPED
        for _ in range(3):  # periodic statuses: Stopped, never the Error again
            message = decode(await asyncio.wait_for(read_frame(reader), timeout=15))
            assert not (isinstance(message, ProducerStatus) and isinstance(message.status, ErrorStatus))
