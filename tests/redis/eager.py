"""Helpers of the eager-mode tests: the recorder drives the loop one cycle at a time."""

from __future__ import annotations

import threading
import time
from typing import Any

from producer_tasks.records import BatchRecord
from producer_tasks.runtime import Runtime
from producer_tasks.state import control
from producer_tasks.worker.tasks import cycle
from tests.conftest import RecordingDispatcher
from tests.fakellm import FakeLLM


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


def begin(rt: Runtime, provider: str) -> None:
    """A worker serves ``provider``, the topic starts on it alone, the lanes are dispatched."""
    serve(rt, provider)
    start(rt, weights={provider: 1.0})
    rt.lanes.reconcile()


def run_next(rec: RecordingDispatcher, *, worker: str = "w1@test") -> str:
    message = rec.sent.pop(0)
    return str(cycle.delay(**message).get())


def fake_calls(rt: Runtime) -> int:
    return rt.fleet.read_stats("mock").total_requests


def batches(rt: Runtime) -> list[BatchRecord]:
    entries = rt.fleet.redis.xrange(rt.fleet.keys.batches)
    return [BatchRecord.model_validate_json(fields["data"]) for _, fields in entries]


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
