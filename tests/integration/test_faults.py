"""Faults with real processes and real signals, asserting counts: batches the fleet appended
against distinct batches the orchestrator received, and the rate after a fault against the
rate before it."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator_bridge.cli.embedded import EmbeddedRedis
from producer_tasks.records import Phase
from producer_tasks.state import control
from tests.harness import wait_for
from tests.integration.test_end_to_end import World, lines, signatures

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]
RATE_WINDOW_S = 5.0


@pytest.fixture
def world(redis_url: str, tmp_path: Path) -> Iterator[World]:
    made = World(redis_url, tmp_path)
    made.env["PRODUCER_QUEUED_TIMEOUT_S"] = "4"  # messages a killed worker had prefetched
    try:
        yield made
    finally:
        made.processes.stop_all()


def rate(batch_log: Path) -> float:
    """Batches received per second over the next ``RATE_WINDOW_S``."""
    before = len(lines(batch_log))
    time.sleep(RATE_WINDOW_S)
    return (len(lines(batch_log)) - before) / RATE_WINDOW_S


def stop_and_count(world: World, batch_log: Path) -> None:
    """Stop reaches Stopped, the stream drains, and every appended batch arrived."""
    control.stop(world.fleet)
    wait_for(
        lambda: world.fleet.read_state().phase is Phase.STOPPED and world.fleet.backlog() == 0,
        timeout_s=60,
        what="stopped and drained",
    )
    appended = world.appended()
    wait_for(
        lambda: len(signatures(batch_log)) >= appended, timeout_s=20, what="every appended batch received"
    )
    assert len(signatures(batch_log)) == appended  # re-sends are duplicates, nothing is missing


def test_worker_kill_9_and_restart_under_the_same_name(world: World) -> None:
    _, batch_log = world.orchestrator("orch", "--duration", "200", "--bloom-interval", "0")
    world.processes.worker("w1", "mock", concurrency=4)
    world.processes.bridge()
    wait_for(lambda: len(lines(batch_log)) >= 30, timeout_s=60, what="batches flowing")
    before = rate(batch_log)
    worker = next(p for name, p in world.processes.started if name == "w1")
    os.kill(worker.pid, signal.SIGKILL)  # its cycles in flight are lost with it
    worker.wait(timeout=10)
    world.processes.worker("w1", "mock", concurrency=4)  # same -n name, at once (systemd, k8s)
    time.sleep(float(world.env["PRODUCER_QUEUED_TIMEOUT_S"]) + 3)  # the old life's lanes come back
    after = rate(batch_log)
    assert after >= 0.7 * before, (before, after)
    stop_and_count(world, batch_log)


def test_redis_paused_for_6_seconds_mid_run(world: World, redis_server: EmbeddedRedis) -> None:
    _, batch_log = world.orchestrator("orch", "--duration", "200", "--bloom-interval", "0")
    world.processes.worker("w1", "mock", concurrency=4)
    world.processes.bridge()
    wait_for(lambda: len(lines(batch_log)) >= 30, timeout_s=60, what="batches flowing")
    before = rate(batch_log)
    assert redis_server.process is not None
    os.kill(redis_server.process.pid, signal.SIGSTOP)
    try:
        time.sleep(6)
    finally:
        os.kill(redis_server.process.pid, signal.SIGCONT)
    time.sleep(2 * float(world.env["PRODUCER_LANE_LEASE_S"]) + 2)
    after = rate(batch_log)
    assert after >= 0.7 * before, (before, after)
    stop_and_count(world, batch_log)
