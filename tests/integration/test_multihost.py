"""The fleet on three hosts: network namespaces joined by a bridge, real TCP between them.

``control`` runs Redis, the reference orchestrator, the bridge and beat; ``worker-a`` and
``worker-b`` each run a worker that reaches Redis at the control host's address. Then
``worker-a``'s link is cut (a partition, not a clean exit) and healed. Needs root for
``ip netns`` (skipped otherwise, e.g. in CI without root).
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from orchestrator_bridge.cli.embedded import redis_server_binary
from producer_tasks.records import LaneStatus
from producer_tasks.settings import load_settings
from producer_tasks.state import control as control_api
from producer_tasks.state.fleet import Fleet
from tests.conftest import open_fleet
from tests.harness import CELERY, Processes, wait_for
from tests.integration.test_end_to_end import lines, signatures
from tests.integration.test_faults import rate

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
HOSTS = ("control", "worker-a", "worker-b")


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=20)


class Network:
    """A Linux bridge in this namespace and one namespace per host, each with its address."""

    def __init__(self) -> None:
        tag = f"{random.randrange(16**4):04x}"
        self.subnet = f"10.231.{random.randrange(1, 250)}"
        self.bridge = f"pbr{tag}"
        self.namespaces = {host: f"p{tag}-{host}" for host in HOSTS}
        self.links = {host: f"pv{tag}{i}" for i, host in enumerate(HOSTS)}
        self.addresses = {host: f"{self.subnet}.{i + 1}" for i, host in enumerate(HOSTS)}

    def up(self) -> Network:
        ip("link", "add", self.bridge, "type", "bridge")
        ip("addr", "add", f"{self.subnet}.254/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        for host, namespace in self.namespaces.items():
            ip("netns", "add", namespace)
            ip("link", "add", self.links[host], "type", "veth", "peer", "name", "eth0", "netns", namespace)
            ip("link", "set", self.links[host], "master", self.bridge, "up")
            ip("-n", namespace, "addr", "add", f"{self.addresses[host]}/24", "dev", "eth0")
            ip("-n", namespace, "link", "set", "eth0", "up")
            ip("-n", namespace, "link", "set", "lo", "up")
        return self

    def on(self, host: str, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.namespaces[host], *argv]

    def cut(self, host: str) -> None:
        ip("link", "set", self.links[host], "down")

    def heal(self, host: str) -> None:
        ip("link", "set", self.links[host], "up")

    def down(self) -> None:
        for host, namespace in self.namespaces.items():
            subprocess.run(
                ["ip", "link", "del", self.links[host]], capture_output=True, timeout=20, check=False
            )
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=20, check=False)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, timeout=20, check=False)


@pytest.fixture
def network() -> Iterator[Network]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespaces need root and iproute2")
    made = Network()
    try:
        made.up()
    except subprocess.CalledProcessError as exc:
        made.down()
        pytest.skip(f"cannot create network namespaces here: {exc.stderr.decode(errors='replace')}")
    try:
        yield made
    finally:
        made.down()


def test_three_hosts_share_the_work_and_survive_a_partition(network: Network, tmp_path: Path) -> None:
    control = network.addresses["control"]
    env = {
        "REDIS_URL": f"redis://{control}:6379/0",
        "ORCHESTRATOR_ADDR": f"{control}:7979",
        "PRODUCER_MOCK_LATENCY_MS": "50",
        "PRODUCER_CONCURRENCY": "8",
        "PRODUCER_LANE_LEASE_S": "2",
        "PRODUCER_RECONCILE_INTERVAL_S": "0.5",
        "PRODUCER_QUEUED_TIMEOUT_S": "4",
        "PRODUCER_RECONNECT_MAX_S": "1",
        # rates compare like with like: a vocabulary the run cannot exhaust (the bloom filter, on by
        # default, would otherwise leave later calls with nothing new to append)
        "PRODUCER_MOCK_VOCABULARY": "10000000",
    }
    processes = Processes(tmp_path, env)
    try:
        processes.spawn(
            "redis",
            network.on(
                "control",
                redis_server_binary(),
                "--bind",
                control,
                "--port",
                "6379",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
            ),
        )
        fleet = open_fleet(load_settings(env))  # the test reaches the control host over the bridge
        wait_for(lambda: _answers(fleet), timeout_s=20, what="Redis on the control host")
        batch_log = tmp_path / "batches.jsonl"
        processes.spawn(
            "orch",
            network.on(
                "control",
                sys.executable,
                "-m",
                "orchestrator_bridge.cli",
                "orchestrator",
                "--listen",
                f"{control}:7979",
                "--topic",
                "cheese",
                "--weight",
                "mock=1",
                "--batch-size",
                "10",
                "--duration",
                "250",
                "--bloom-interval",
                "0",
                "--batch-log",
                str(batch_log),
            ),
        )
        processes.spawn("bridge", network.on("control", sys.executable, "-m", "orchestrator_bridge"))
        processes.spawn("beat", network.on("control", *CELERY, "beat", "--loglevel", "INFO"))
        for host in ("worker-a", "worker-b"):
            processes.spawn(
                host,
                network.on(
                    host,
                    *CELERY,
                    "worker",
                    "-Q",
                    "mock",
                    "-P",
                    "threads",
                    "-c",
                    "8",
                    "-n",
                    f"{host}@{host}",
                    "--loglevel",
                    "INFO",
                ),
            )
        wait_for(lambda: len(fleet.live_workers()) == 2, timeout_s=60, what="workers on both hosts")
        wait_for(lambda: len(lines(batch_log)) >= 40, timeout_s=90, what="batches across hosts")

        def hosts_with_lanes() -> set[str]:
            return {lane.worker.split("@")[0] for lane in fleet.view().lanes.values() if lane.worker}

        wait_for(lambda: hosts_with_lanes() == {"worker-a", "worker-b"}, timeout_s=30, what="both hosts busy")
        before = rate(batch_log)

        network.cut("worker-a")  # a partition: no FIN, no RST, packets just vanish
        cut_at = time.monotonic()

        def only_b_runs() -> bool:
            lanes = fleet.view().lanes.values()
            running = [lane for lane in lanes if lane.status in (LaneStatus.RESERVED, LaneStatus.RUNNING)]
            return bool(running) and all(lane.worker.startswith("worker-b@") for lane in running)

        wait_for(only_b_runs, timeout_s=30, what="worker-b takes worker-a's lanes")
        moved_s = time.monotonic() - cut_at
        during = rate(batch_log)
        assert during >= 0.6 * before, (before, during)

        network.heal("worker-a")
        wait_for(lambda: "worker-a" in hosts_with_lanes(), timeout_s=60, what="worker-a back at work")
        after = rate(batch_log)
        assert after >= 0.7 * before, (before, after)
        print(
            f"rate before {before:.1f}/s, partitioned {during:.1f}/s (lanes moved in {moved_s:.1f} s), "
            f"healed {after:.1f}/s"
        )

        control_api.stop(fleet)
        wait_for(
            lambda: fleet.backlog() == 0 and fleet.read_state().phase.value == "stopped",
            timeout_s=60,
            what="stopped and drained",
        )
        appended = fleet.read_counters().get("batches_appended", 0)
        wait_for(lambda: len(signatures(batch_log)) >= appended, timeout_s=20, what="every batch received")
        assert len(signatures(batch_log)) == appended  # across hosts and a partition: nothing lost
    finally:
        processes.stop_all()


def _answers(fleet: Fleet) -> bool:
    try:
        return bool(fleet.redis.ping())
    except redis.RedisError:
        return False
