"""Celery's and Flower's own tools see the fleet's broker as the Redis it is: Flower's
queue lengths (its Broker tab), ``celery status``, ``inspect``, ``control shutdown``,
``purge -Q``."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from orchestrator_bridge.cli.embedded import free_port
from producer_tasks.settings import load_settings
from producer_tasks.state.keys import Keys
from tests.harness import CELERY, Processes, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


@pytest.fixture
def fleet(redis_url: str, tmp_path: Path) -> Iterator[Processes]:
    processes = Processes(tmp_path, {"REDIS_URL": redis_url, "PRODUCER_ID": "tools"})
    try:
        yield processes
    finally:
        processes.stop_all()


def celery(processes: Processes, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**processes.env, "PATH": str(Path(sys.executable).parent)}
    return subprocess.run([*CELERY, *args], env=env, capture_output=True, text=True, timeout=90, check=False)


def get_json(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return json.loads(answer.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


def test_flower_and_celerys_commands_see_the_provider_queues_and_their_lengths(
    fleet: Processes, redis_url: str
) -> None:
    worker = fleet.worker("tools-worker", "mock", concurrency=2)
    port = free_port()
    fleet.spawn(
        "flower",
        [*CELERY, "flower", f"--port={port}", "--address=127.0.0.1"],
        extra_env={"FLOWER_UNAUTHENTICATED_API": "true"},  # the API without a login, on loopback
    )
    api = f"http://127.0.0.1:{port}/api"
    wait_for(lambda: bool(get_json(f"{api}/workers?refresh=1")), timeout_s=90, interval_s=1, what="flower's workers")

    status = celery(fleet, "status")
    assert status.returncode == 0 and "tools-worker@" in status.stdout, status.stdout + status.stderr
    inspected = celery(fleet, "inspect", "active_queues", "--json")
    assert inspected.returncode == 0, inspected.stderr
    assert "mock" in {q["name"] for queues in json.loads(inspected.stdout).values() for q in queues}

    lengths = get_json(f"{api}/queues/length")  # was a 404: "'redis' broker is not supported"
    assert lengths == {"active_queues": [{"name": "mock", "messages": 0}]}, lengths

    celery(fleet, "control", "shutdown")  # a worker does not reply to it ("No nodes replied"): it goes
    assert worker.wait(timeout=60) == 0  # a warm shutdown; Flower keeps what the worker served
    queue = Keys(load_settings({"REDIS_URL": redis_url, "PRODUCER_ID": "tools"}).id).broker_prefix + "mock"
    client = redis.Redis.from_url(redis_url)
    client.lpush(queue, *[json.dumps({"body": "", "headers": {}, "properties": {}})] * 5)
    assert get_json(f"{api}/queues/length") == {"active_queues": [{"name": "mock", "messages": 5}]}

    purged = celery(fleet, "purge", "-Q", "mock", "-f")
    assert purged.returncode == 0 and "Purged 5 messages" in purged.stdout, purged.stdout + purged.stderr
    assert client.llen(queue) == 0
    client.close()
