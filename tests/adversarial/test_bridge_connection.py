"""One connection's statuses never go back in time, and a flood of stalled connections to the
metrics port (with the bridge's file limit low) does not keep the bridge from reconnecting
to its orchestrator: a real bridge process, real sockets (issue 30)."""

from __future__ import annotations

import itertools
import socket
import time
import urllib.request
from pathlib import Path

import pytest

from orchestrator_bridge import (
    GenerationConfig,
    ProducerState,
    ProducerStatusType,
    StartTopic,
    Stop,
    encode,
)
from orchestrator_bridge.cli.embedded import free_port
from tests.adversarial.peer import BridgeProcess
from tests.harness import wait_for

pytestmark = pytest.mark.adversarial
START = StartTopic("cheese", "List {batch_size} {topic}", {"mock": 1.0}, GenerationConfig(0.5, 100, 10))
STOPPED = frozenset({ProducerState.STOPPING, ProducerState.STOPPED})


def statuses_for(bridge: BridgeProcess, seconds: float) -> list[ProducerStatusType]:
    """Every status the bridge sends in the next ``seconds`` (several periodic ones)."""
    seen = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        seen.append(bridge.peer.status().status)
    return seen


def test_statuses_never_go_back_in_time_on_one_connection(bridge: BridgeProcess) -> None:
    """Start and Stop, again and again, with a status every 0.2 s: once a frame is answered,
    no status from before it follows (the issue saw Running, a stale Stopped, Running)."""
    peer = bridge.peer
    peer.status()
    stale: list[str] = []
    for round_ in range(8):
        peer.send(encode(START))
        peer.status(ProducerState.RUNNING)  # the answer, or a status after it
        stale += [
            f"{round_}: {s} after Running" for s in statuses_for(bridge, 0.6) if s != ProducerState.RUNNING
        ]
        peer.send(encode(Stop()))
        answer = peer.status(STOPPED)  # Stopping, then Stopped (at once: nothing in flight)
        after = [answer.status, *statuses_for(bridge, 0.6)]
        stale += [f"{round_}: {s} after Stopping" for s in after if s not in STOPPED]
        stale += [
            f"{round_}: Stopping after Stopped"
            for a, b in itertools.pairwise(after)
            if (a, b) == (ProducerState.STOPPED, ProducerState.STOPPING)
        ]
    assert stale == []


def stalled_connections(port: int, count: int) -> list[socket.socket]:
    made = []
    for _ in range(count):
        client = socket.create_connection(("127.0.0.1", port), timeout=5)
        client.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # headers never finished
        made.append(client)
    return made


def healthz(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as answer:
            return answer.status == 200
    except OSError:  # closed at once while the flood fills every slot
        return False


def reconnect_seconds(bridge: BridgeProcess) -> float:
    """How long the bridge takes to be back after the orchestrator drops it."""
    peer = bridge.peer
    peer.drop()
    dropped = time.monotonic()
    peer.accept(timeout_s=60)
    peer.status()
    return time.monotonic() - dropped


def test_306_stalled_metrics_connections_do_not_delay_the_reconnect(redis_url: str, tmp_path: Path) -> None:
    """The issue's probe: file limit 400, 306 idle connections to the metrics port, then the
    orchestrator drops the bridge (before: 40 s to reach it again). Measured against the same
    bridge's reconnect without the flood."""
    metrics = free_port()
    bridge = BridgeProcess.start(tmp_path, redis_url, nofile=400, PRODUCER_METRICS_PORT=str(metrics))
    flood: list[socket.socket] = []
    try:
        bridge.peer.status()
        quiet = reconnect_seconds(bridge)
        flood = stalled_connections(metrics, 306)
        time.sleep(0.5)
        assert bridge.descriptors() < 100, bridge.descriptors()  # 8 served, 32 waiting, the rest closed
        flooded = reconnect_seconds(bridge)
        assert flooded <= quiet + 5.0, (quiet, flooded)  # the 1 s backoff, not the flood, decides
        # the stalled ones are dropped after the server's 10 s timeout: it answers again
        wait_for(lambda: healthz(metrics), timeout_s=40, what="/healthz with the flood still open")
        assert not any("Too many open files" in line for line in bridge.log_lines())
    finally:
        for client in flood:
            client.close()
        bridge.stop()
