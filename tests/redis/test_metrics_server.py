"""The metrics port under a flood of stalled connections (issue 30): a bounded pool of
threads and of waiting connections, each stalled one dropped after its timeout, the rest
closed at once; the port answers again as soon as the flood ends."""

from __future__ import annotations

import os
import socket
import threading
import time
import urllib.request
from typing import Any

import pytest

from orchestrator_bridge import metrics
from orchestrator_bridge.cli.embedded import free_port
from orchestrator_bridge.metrics import serve_metrics
from tests.conftest import make_runtime
from tests.harness import wait_for

pytestmark = [pytest.mark.usefixtures("eager"), pytest.mark.adversarial]


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_300_stalled_connections_cost_bounded_threads_and_descriptors(
    redis_url: str, installed_runtime: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metrics, "REQUEST_TIMEOUT_S", 2.0)  # the stalled ones are dropped sooner
    rt, _ = make_runtime(redis_url)
    installed_runtime(rt)
    port = free_port()
    server = serve_metrics(rt.fleet, "127.0.0.1", port)
    threads, descriptors = threading.active_count(), open_descriptors()
    stalled = []
    try:
        for _ in range(300):  # unfinished request lines, never completed
            client = socket.create_connection(("127.0.0.1", port), timeout=5)
            client.sendall(b"GET /metr")
            stalled.append(client)
        time.sleep(0.5)
        assert threading.active_count() - threads <= metrics.MAX_WORKERS
        server_side = open_descriptors() - descriptors - len(stalled)
        assert server_side <= metrics.MAX_WORKERS + metrics.MAX_WAITING + 2, server_side
        # every stalled connection is closed by the server: at once (no room) or after its timeout
        wait_for(lambda: closed_by_server(stalled), timeout_s=15, what="the server closing every one")
    finally:
        for client in stalled:
            client.close()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/autoscaling", timeout=10) as answer:
        assert answer.status == 200  # and it serves again
    server.close()


def closed_by_server(clients: list[socket.socket]) -> bool:
    """Every client reads end-of-file: the server closed its side."""
    for client in clients:
        try:
            if client.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b"":
                return False
        except BlockingIOError:
            return False  # still open on the server's side
    return True
