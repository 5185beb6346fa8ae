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

from orchestrator_bridge.cli.embedded import EmbeddedRedis, free_port
from producer_tasks.generation.prompt import FACETS_MARK
from producer_tasks.records import Phase
from producer_tasks.state import control
from tests.conftest import provider_env
from tests.fakellm import FakeLLM
from tests.harness import wait_for
from tests.integration.test_end_to_end import World, lines, signatures
from tests.netfault import FaultProxy

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]
RATE_WINDOW_S = 4.0


@pytest.fixture
def world(redis_url: str, tmp_path: Path) -> Iterator[World]:
    made = World(redis_url, tmp_path)
    made.env["PRODUCER_QUEUED_TIMEOUT_S"] = "4"  # messages a killed worker had prefetched
    try:
        yield made
    finally:
        made.processes.stop_all()


class OwnRedis:
    """A redis-server of the test's own on a fixed port: started late, killed, restarted empty."""

    def __init__(self) -> None:
        self.port = free_port()
        self.server: EmbeddedRedis | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.server = EmbeddedRedis(unix_socket=False, port=self.port).start()

    def kill(self) -> None:
        assert self.server is not None and self.server.process is not None
        os.kill(self.server.process.pid, signal.SIGKILL)
        self.server.process.wait(timeout=10)
        self.server.stop()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[OwnRedis, World]]:
    redis = OwnRedis()
    made = World(redis.url, tmp_path)  # connects lazily: nothing touches Redis yet
    made.env["PRODUCER_QUEUED_TIMEOUT_S"] = "4"
    try:
        yield redis, made
    finally:
        made.processes.stop_all()
        redis.stop()


def flowing(batch_log: Path, *, at_least: int = 20, timeout_s: float = 90) -> None:
    target = len(lines(batch_log)) + at_least
    wait_for(lambda: len(lines(batch_log)) >= target, timeout_s=timeout_s, what=f"{at_least} more batches")


def rate(batch_log: Path) -> float:
    """Batches received per second over the next ``RATE_WINDOW_S``."""
    before = len(lines(batch_log))
    time.sleep(RATE_WINDOW_S)
    return (len(lines(batch_log)) - before) / RATE_WINDOW_S


def stop_and_drain(world: World) -> int:
    """Stop reaches Stopped and the stream drains; the batches the fleet appended."""
    control.stop(world.fleet)
    wait_for(
        lambda: world.fleet.read_state().phase is Phase.STOPPED and world.fleet.backlog() == 0,
        timeout_s=60,
        what="stopped and drained",
    )
    return world.appended()


def stop_and_count(world: World, batch_log: Path) -> None:
    """Stop reaches Stopped, the stream drains, and every appended batch arrived."""
    appended = stop_and_drain(world)
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


def test_bridge_and_worker_started_before_redis(own_redis: tuple[OwnRedis, World]) -> None:
    redis, world = own_redis
    _, batch_log = world.orchestrator("orch", "--duration", "200", "--bloom-interval", "0")
    world.processes.worker("w1", "mock", concurrency=4)
    world.processes.bridge()
    time.sleep(8)  # every process has met the missing Redis by now
    assert [name for name, p in world.processes.started if p.poll() is not None] == []
    redis.start()
    flowing(batch_log)
    before = rate(batch_log)
    assert before > 0
    stop_and_count(world, batch_log)


def test_redis_killed_and_restarted_empty(own_redis: tuple[OwnRedis, World]) -> None:
    """Without persistence Redis forgets the topic, the lanes, the stream and the broker's
    queues: the bridge re-applies the orchestrator's StartTopic, workers reconnect, and
    everything appended after the restart is received (what the stream held is lost)."""
    redis, world = own_redis
    redis.start()
    _, batch_log = world.orchestrator("orch", "--duration", "200", "--bloom-interval", "0")
    world.processes.worker("w1", "mock", concurrency=4)
    world.processes.bridge()
    flowing(batch_log)
    before = rate(batch_log)
    redis.kill()
    redis.start()  # same port, empty
    mark = len(lines(batch_log))
    flowing(batch_log, timeout_s=120)
    after = rate(batch_log)
    assert after >= 0.7 * before, (before, after)
    assert "re-applying the orchestrator's last StartTopic" in world.processes.log("bridge")
    appended = stop_and_drain(world)  # since the restart
    wait_for(
        lambda: len(signatures_after(batch_log, mark)) >= appended,
        timeout_s=20,
        what="every batch appended since the restart received",
    )


def signatures_after(batch_log: Path, mark: int) -> set[tuple[str, ...]]:
    return {tuple(b["attributes"]) for b in lines(batch_log)[mark:]}  # type: ignore[arg-type]


def test_orchestrator_stops_reading_then_drops_the_connection_unread(world: World) -> None:
    """SIGSTOP for 8 s (the socket buffers fill), then kill -9: whatever the kernel had
    taken but the orchestrator never read is re-sent to the next orchestrator."""
    _, first_log = world.orchestrator("orch", "--duration", "200", "--bloom-interval", "0")
    world.processes.worker("w1", "mock", concurrency=4)
    world.processes.bridge()
    flowing(first_log)
    before = rate(first_log)
    orchestrator = next(p for name, p in world.processes.started if name == "orch")
    os.kill(orchestrator.pid, signal.SIGSTOP)
    time.sleep(8)
    os.kill(orchestrator.pid, signal.SIGKILL)  # never reads what is in its buffers
    orchestrator.wait(timeout=10)
    _, second_log = world.orchestrator("orch2", "--duration", "200", "--bloom-interval", "0")
    flowing(second_log)
    after = rate(second_log)
    assert after >= 0.7 * before, (before, after)
    assert "batches of the resend window" in world.processes.log("bridge")
    appended = stop_and_drain(world)
    wait_for(
        lambda: len(signatures(first_log) | signatures(second_log)) >= appended,
        timeout_s=20,
        what="every appended batch received by one orchestrator or the other",
    )
    assert len(signatures(first_log) | signatures(second_log)) == appended


@pytest.fixture
def fake_world(world: World, fake_llm: FakeLLM) -> World:
    """The world with OpenAI answered by the fake server (it counts what it served), 1.2 s a
    call, and a vocabulary large enough that two batches never look alike."""
    world.env.update(provider_env(fake_llm))
    fake_llm.set("openai", latency_ms=1200, vocabulary=10_000_000)
    return world


def served(fake_llm: FakeLLM) -> int:
    """Answers that carried attributes (not the once-per-topic request for facets)."""
    with fake_llm.lock:
        return sum(
            1
            for r in fake_llm.requests
            if r.api == "openai" and "/chat/completions" in r.path and FACETS_MARK not in str(r.body)
        )


def test_warm_shutdown_finishes_its_cycles_and_never_exceeds_the_concurrency(
    fake_world: World, fake_llm: FakeLLM
) -> None:
    world = fake_world
    _, batch_log = world.orchestrator("orch", "--duration", "200", "--bloom-interval", "0", weight="openai=1")
    leaving = world.processes.worker("w1", "openai", concurrency=4)
    world.processes.worker("w2", "openai", concurrency=4)
    world.processes.bridge()
    flowing(batch_log, at_least=10)
    leaving.send_signal(signal.SIGTERM)  # a KEDA scale-down: w1 finishes what it runs, then leaves
    assert leaving.wait(timeout=60) == 0
    flowing(batch_log, at_least=10)
    appended = stop_and_drain(world)
    wait_for(
        lambda: len(signatures(batch_log)) >= served(fake_llm), timeout_s=20, what="every response received"
    )
    assert len(signatures(batch_log)) == served(fake_llm) == appended  # no paid-for answer lost
    assert fake_llm.peak <= int(world.env["PRODUCER_CONCURRENCY"])  # never more calls than lanes


def test_a_lost_redis_reply_duplicates_no_batch(
    fake_world: World, fake_llm: FakeLLM, redis_server: EmbeddedRedis
) -> None:
    """The worker's Redis connection goes through a proxy that swallows the reply to one
    delivery and drops the connection: the delivery is resent, and appends once."""
    world = fake_world
    proxy = FaultProxy(redis_server.port).start()
    try:
        _, batch_log = world.orchestrator(
            "orch", "--duration", "200", "--bloom-interval", "0", weight="openai=1"
        )
        world.processes.worker("w1", "openai", concurrency=4, extra_env={"REDIS_URL": proxy.url})
        world.processes.bridge()
        flowing(batch_log, at_least=10)
        proxy.drop_reply_to(b":deliver")  # the once key of a delivery script
        wait_for(lambda: proxy.dropped == 1, timeout_s=30, what="a delivery's reply swallowed")
        flowing(batch_log, at_least=10)
        stop_and_count(world, batch_log)
        received = lines(batch_log)
        assert len(received) == len(signatures(batch_log))  # no batch arrived twice
        assert len(received) == served(fake_llm)  # and none is missing
    finally:
        world.processes.stop_all()  # before the proxy: nothing reconnects through it any more
        proxy.stop()
