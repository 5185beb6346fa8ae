"""End to end with real processes: reference orchestrator, bridge, worker, redis-server."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator_bridge.cli.embedded import free_port
from producer_tasks.bloomhash import normalize
from producer_tasks.records import Phase
from producer_tasks.settings import load_settings
from producer_tasks.state import control
from tests.conftest import open_fleet
from tests.harness import Processes, dedup_run, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


class World:
    def __init__(self, redis_url: str, log_dir: Path) -> None:
        self.port = free_port()
        self.dir = log_dir
        self.env = {
            "REDIS_URL": redis_url,
            "ORCHESTRATOR_ADDR": f"127.0.0.1:{self.port}",
            "PRODUCER_MOCK_LATENCY_MS": "30",
            "PRODUCER_CONCURRENCY": "4",
            "PRODUCER_LANE_LEASE_S": "2",
            "PRODUCER_RECONCILE_INTERVAL_S": "0.5",
            "PRODUCER_RECONNECT_MAX_S": "1",
            "PRODUCER_MAX_BACKLOG": "40",
        }
        self.processes = Processes(log_dir, self.env)
        self.settings = load_settings(self.env)
        self.fleet = open_fleet(self.settings)

    def orchestrator(self, name: str, *extra: str, weight: str = "mock=1") -> tuple[Path, Path]:
        output, batches = self.dir / f"{name}-unique.jsonl", self.dir / f"{name}-batches.jsonl"
        self.processes.orchestrator(
            name,
            "--listen",
            f"127.0.0.1:{self.port}",
            "--topic",
            "cheese",
            "--weight",
            weight,
            "--batch-size",
            "10",
            "--output",
            str(output),
            "--batch-log",
            str(batches),
            *extra,
        )
        return output, batches

    def appended(self) -> int:
        return self.fleet.read_counters().get("batches_appended", 0)


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def signatures(path: Path) -> set[tuple[str, ...]]:
    return {tuple(b["attributes"]) for b in lines(path)}  # type: ignore[arg-type]


@pytest.fixture
def world(redis_url: str, tmp_path: Path) -> Iterator[World]:
    made = World(redis_url, tmp_path)
    try:
        yield made
    finally:
        made.processes.stop_all()


def test_reference_orchestrator_bridge_worker_write_unique_attributes(world: World) -> None:
    output, _ = world.orchestrator("orch", "--count", "150")
    world.processes.worker("w1", "mock", concurrency=4)
    world.processes.bridge()
    orchestrator = world.processes.started[0][1]
    orchestrator.wait(timeout=120)
    assert orchestrator.returncode == 0, world.processes.log("orch")[-2000:]
    records = lines(output)
    keys = [normalize(str(r["text"])) for r in records]
    assert len(keys) >= 150 and len(set(keys)) == len(keys)
    assert all(r["provider"] == "mock" and r["producer_id"] == "producer-1" for r in records)
    wait_for(lambda: world.fleet.read_state().phase is Phase.STOPPED, what="producer stopped")


def test_orchestrator_down_at_start_then_restarted_mid_run_misses_nothing(world: World) -> None:
    world.processes.worker("w1", "mock", concurrency=4)
    world.processes.bridge()
    # the topic was started earlier (a previous orchestrator); now nobody is listening
    wait_for(lambda: bool(world.fleet.live_workers()), what="worker")
    result = control.start_topic(
        world.fleet,
        world.settings,
        topic="cheese",
        prompt="List {batch_size} {topic}",
        weights={"mock": 1.0},
        temperature=0.7,
        max_tokens=100,
        batch_size=10,
    )
    assert result.accepted
    wait_for(lambda: world.fleet.backlog() >= 20, what="backlog while the orchestrator is down")
    _, first_log = world.orchestrator("first")
    wait_for(lambda: len(lines(first_log)) >= world.appended() > 40, timeout_s=60, what="first catches up")
    first = world.processes.started[-1][1]
    os.kill(first.pid, signal.SIGKILL)  # dies mid-run
    first.wait(timeout=10)
    appended_at_kill = world.appended()
    time.sleep(2)  # generation goes on into the backlog
    _, second_log = world.orchestrator("second", "--count", "300")
    second = world.processes.started[-1][1]
    second.wait(timeout=120)
    wait_for(
        lambda: world.fleet.read_state().phase is Phase.STOPPED and world.fleet.backlog() == 0,
        what="stopped and drained",
    )
    wait_for(
        lambda: len(lines(second_log)) >= world.appended() - appended_at_kill,
        timeout_s=10,
        what="every batch appended after the kill",
    )
    received_second = signatures(second_log)
    assert len(received_second) >= world.appended() - appended_at_kill
    assert len(lines(first_log)) >= 40


def test_kill_9_of_the_bridge_loses_no_batch(world: World) -> None:
    _, batch_log = world.orchestrator("orch", "--duration", "60", "--bloom-interval", "0")
    world.processes.worker("w1", "mock", concurrency=4)
    bridge = world.processes.bridge("bridge1")
    wait_for(lambda: len(lines(batch_log)) >= 20, timeout_s=60, what="batches flowing")
    os.kill(bridge.pid, signal.SIGKILL)
    bridge.wait(timeout=10)
    time.sleep(1.5)
    world.processes.bridge("bridge2")
    wait_for(lambda: len(lines(batch_log)) >= 60, timeout_s=60, what="batches flowing again")
    control.stop(world.fleet)
    wait_for(
        lambda: world.fleet.read_state().phase is Phase.STOPPED and world.fleet.backlog() == 0,
        timeout_s=30,
        what="stopped and drained",
    )
    appended = world.appended()
    wait_for(lambda: len(signatures(batch_log)) >= appended, timeout_s=10, what="all batches received")
    assert len(signatures(batch_log)) == appended  # each appended batch arrived (re-sends are duplicates)


def test_bloom_filter_cuts_duplicates_reaching_the_orchestrator(redis_url: str, tmp_path: Path) -> None:
    off = dedup_run(redis_url, tmp_path / "off", bloom_filter=False, count=300, vocabulary=600)
    on = dedup_run(redis_url, tmp_path / "on", bloom_filter=True, count=300, vocabulary=600)
    print(f"duplicates reaching the orchestrator: off {off}, on {on}")
    assert off.unique >= 300 and on.unique >= 300
    assert off.duplicates > 100  # the mock repeats itself like a real model
    off_rate, on_rate = off.duplicates / off.received, on.duplicates / on.received
    assert on_rate <= 0.05 * off_rate, (off, on)
