"""The fleet with real Celery worker processes, a real redis-server and the fake LLM server."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from producer_tasks.errors import StateError
from producer_tasks.records import LaneStatus, Phase
from producer_tasks.settings import Settings, load_settings
from producer_tasks.state import control, outcomes
from tests.conftest import open_fleet, provider_env
from tests.fakellm import FakeLLM
from tests.harness import CELERY, Processes, wait_for
from tests.sentinel import SentinelSetup, failed_over

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

WORKER_ENV = {
    "PRODUCER_MOCK_LATENCY_MS": "20",
    "PRODUCER_BACKOFF_BASE_S": "0.2",
    "PRODUCER_BACKOFF_MAX_S": "1",
    "PRODUCER_MAX_RETRY_AFTER_S": "10",  # a Retry-After of 3 s is honoured (the default cap: the backoff's 1 s)
    "PRODUCER_LANE_LEASE_S": "2",
    "PRODUCER_RECONCILE_INTERVAL_S": "0.5",
    "PRODUCER_HEALTH_CHECK_INTERVAL_S": "1",
    "PRODUCER_REQUEST_TIMEOUT_S": "5",
}


class Harness:
    def __init__(
        self, redis_url: str, fake: FakeLLM, log_dir: Path, providers: dict[str, str] | None = None
    ) -> None:
        """``providers``: the environment that defines the providers (default: both SDKs at ``fake``)."""
        self.env = {
            "REDIS_URL": redis_url,
            **(provider_env(fake) if providers is None else providers),
            **WORKER_ENV,
        }
        self.fake = fake
        self.processes = Processes(log_dir, self.env)
        self.settings: Settings = load_settings(self.env)
        self.fleet = open_fleet(self.settings)

    def start(
        self,
        weights: dict[str, float],
        *,
        topic: str = "cheese",
        concurrency: int = 8,
        max_backlog: int = 100_000,
        batch_size: int = 10,
    ) -> None:
        settings = self.settings.model_copy(update={"concurrency": concurrency, "max_backlog": max_backlog})
        result = control.start_topic(
            self.fleet,
            settings,
            topic=topic,
            prompt="List {batch_size} {topic}",
            weights=weights,
            temperature=0.7,
            max_tokens=100,
            batch_size=batch_size,
        )
        assert result.accepted, result.reason

    def backlog(self) -> int:
        return self.fleet.backlog()

    def live_lanes(self) -> int:
        view = self.fleet.view()
        live = self.fleet.live_workers()
        return sum(
            1
            for lane in view.lanes.values()
            if lane.status is LaneStatus.QUEUED
            or (lane.status in (LaneStatus.RESERVED, LaneStatus.RUNNING) and lane.worker in live)
        )

    def wait_workers(self, count: int) -> None:
        wait_for(lambda: len(self.fleet.live_workers()) >= count, timeout_s=60, what=f"{count} live workers")


@pytest.fixture
def harness(redis_url: str, fake_llm: FakeLLM, tmp_path: Path) -> Iterator[Harness]:
    made = Harness(redis_url, fake_llm, tmp_path)
    try:
        yield made
    finally:
        made.processes.stop_all()
        for name in ("w1", "w2", "beat"):
            text = made.processes.log(name)
            if "Traceback" in text:
                print(f"--- {name} log ---\n{text[-4000:]}")


def test_cycles_flow_continuously_in_proportion_to_weights(harness: Harness, fake_llm: FakeLLM) -> None:
    harness.processes.worker("w1", "openai,anthropic", concurrency=16)
    harness.wait_workers(1)
    harness.start({"openai": 3.0, "anthropic": 1.0}, concurrency=12)
    wait_for(
        lambda: fake_llm.count(kind="/messages") + fake_llm.count(kind="/chat") >= 400,
        timeout_s=90,
        what="400 provider calls",
    )
    openai, anthropic = fake_llm.count("openai"), fake_llm.count("anthropic")
    share = openai / (openai + anthropic)
    # expected 0.75; with >= 400 draws the standard deviation is ~0.022: allow ~4 sigma
    assert abs(share - 0.75) < 0.09, (openai, anthropic)
    assert harness.backlog() > 300  # batches keep arriving in the stream


def test_a_failing_provider_is_excluded_and_returns_after_a_health_check(
    harness: Harness, fake_llm: FakeLLM
) -> None:
    harness.processes.worker("w1", "openai,anthropic", concurrency=8)
    harness.processes.beat()
    harness.wait_workers(1)
    harness.start({"openai": 1.0, "anthropic": 1.0}, concurrency=4)
    wait_for(lambda: fake_llm.count("openai") >= 10, what="openai traffic")
    fake_llm.set("openai", mode="status", status=500)
    wait_for(lambda: harness.fleet.read_health("openai").status == "unhealthy", what="openai unhealthy")
    failed_at = fake_llm.count("anthropic")
    time.sleep(2)
    chats = [r for r in fake_llm.requests if r.api == "openai" and r.path.endswith("/chat/completions")]
    recent = [r for r in chats if r.at > time.time() - 1.5]
    assert recent == []  # no generation traffic to the unhealthy provider
    assert fake_llm.count("anthropic") - failed_at > 10  # its share moved to anthropic
    assert any("/models/" in r.path for r in fake_llm.requests if r.api == "openai")  # probed
    fake_llm.set("openai")
    wait_for(
        lambda: harness.fleet.read_health("openai").status == "healthy",
        timeout_s=30,
        what="health check restores openai",
    )
    back = fake_llm.count("openai", kind="/chat/completions")
    wait_for(
        lambda: fake_llm.count("openai", kind="/chat/completions") > back + 10, what="openai selected again"
    )


def test_retry_after_is_honoured_across_all_workers(harness: Harness, fake_llm: FakeLLM) -> None:
    harness.processes.worker("w1", "openai,mock", concurrency=8)
    harness.processes.worker("w2", "openai,mock", concurrency=8)
    harness.wait_workers(2)
    harness.start({"openai": 1.0, "mock": 1.0}, concurrency=8)
    wait_for(lambda: fake_llm.count("openai") >= 20, what="openai traffic")
    switched = time.time()
    fake_llm.set("openai", mode="status", status=429, retry_after="3", seconds=0.3)
    wait_for(lambda: harness.fleet.read_health("openai").cooldown_until_ms > 0, what="cooldown recorded")
    time.sleep(5)
    times = fake_llm.times("openai")
    first_429 = min(t for t in times if t >= switched)
    # calls already in flight when the first 429 came back land within ~0.5 s; after that,
    # no worker sends anything to openai until Retry-After (3 s) has passed
    in_pause = [round(t - first_429, 2) for t in times if first_429 + 0.5 < t < first_429 + 2.9]
    assert in_pause == []
    assert any(t >= first_429 + 2.9 for t in times)  # and traffic resumed afterwards
    assert harness.fleet.read_stats("mock").total_requests > 0  # mock kept the lanes busy


def test_kill_9_of_a_worker_mid_run_restores_its_lanes(harness: Harness) -> None:
    w1 = harness.processes.worker("w1", "mock", concurrency=8)
    harness.processes.worker("w2", "mock", concurrency=8)
    harness.wait_workers(2)
    harness.start({"mock": 1.0}, concurrency=12)
    wait_for(lambda: harness.backlog() >= 50, what="cycles flowing")
    wait_for(
        lambda: any(lane.worker.startswith("w1@") for lane in harness.fleet.view().lanes.values()),
        what="w1 holds lanes",
    )
    os.kill(w1.pid, signal.SIGKILL)
    w1.wait(timeout=10)
    killed_at = time.monotonic()
    before = harness.backlog()
    wait_for(
        lambda: (
            harness.live_lanes() == 12
            and all(not lane.worker.startswith("w1@") for lane in harness.fleet.view().lanes.values())
        ),
        timeout_s=20,
        what="all 12 lanes restored on w2",
    )
    assert time.monotonic() - killed_at < 20
    wait_for(lambda: harness.backlog() >= before + 50, what="generation continues")


def test_no_provider_request_starts_after_stop(harness: Harness, fake_llm: FakeLLM) -> None:
    fake_llm.set("openai", latency_ms=200)
    harness.processes.worker("w1", "openai", concurrency=8)
    harness.wait_workers(1)
    harness.start({"openai": 1.0}, concurrency=6)
    wait_for(lambda: fake_llm.count("openai") >= 20, what="traffic")
    result = control.stop(harness.fleet)
    at_stop = fake_llm.count("openai")
    assert result.accepted
    wait_for(lambda: harness.fleet.read_state().phase is Phase.STOPPED, what="stopped")
    after_stop = fake_llm.count("openai")
    assert after_stop - at_stop <= 6  # at most the cycles already claimed when Stop was processed
    time.sleep(2)
    assert fake_llm.count("openai") == after_stop
    assert harness.fleet.view().lanes == {}


def test_topic_switch_never_forwards_old_batches(harness: Harness) -> None:
    harness.processes.worker("w1", "mock", concurrency=8)
    harness.wait_workers(1)
    harness.start({"mock": 1.0}, topic="cheese", concurrency=8)
    wait_for(lambda: harness.backlog() >= 30, what="cheese batches")
    harness.start({"mock": 1.0}, topic="towns", concurrency=8)
    wait_for(lambda: harness.backlog() >= 40, what="towns batches")
    entries = harness.fleet.redis.xrange(harness.fleet.keys.batches)
    epochs = {int(fields["epoch"]) for _, fields in entries}
    assert epochs == {harness.fleet.read_state().epoch}
    assert all('"topic":"towns"' in fields["data"] for _, fields in entries)


def test_backlog_bound_stops_generation(harness: Harness, fake_llm: FakeLLM) -> None:
    harness.processes.worker("w1", "openai", concurrency=8)
    harness.wait_workers(1)
    harness.start({"openai": 1.0}, concurrency=4, max_backlog=30)
    wait_for(lambda: harness.backlog() >= 30, what="backlog reaches its bound")
    time.sleep(1.5)
    calls, size = fake_llm.count("openai"), harness.backlog()
    assert 30 <= size <= 30 + 4  # at most the cycles in flight when the bound was reached
    time.sleep(2)
    assert (fake_llm.count("openai"), harness.backlog()) == (calls, size)
    view = harness.fleet.view()
    assert all(
        lane.status is LaneStatus.WAITING and lane.reason.startswith("backlog full")
        for lane in view.lanes.values()
    )
    # draining resumes generation
    ids = [entry_id for entry_id, _ in harness.fleet.redis.xrange(harness.fleet.keys.batches)]
    harness.fleet.redis.xdel(harness.fleet.keys.batches, *ids)
    wait_for(lambda: fake_llm.count("openai") > calls, what="generation resumes")


def test_a_worker_does_not_consume_a_queue_it_cannot_serve(harness: Harness) -> None:
    harness.processes.worker("w1", "openai,mock", concurrency=4, extra_env={"OPENAI_API_KEY": ""})
    harness.wait_workers(1)
    fleet = harness.fleet
    wait_for(lambda: "not consuming queue 'openai'" in harness.processes.log("w1"), what="the warning")
    assert fleet.redis.zcard(fleet.keys.queue_workers("openai")) == 0
    assert fleet.redis.zcard(fleet.keys.queue_workers("mock")) == 1
    harness.start({"openai": 1.0, "mock": 1.0}, concurrency=2)
    wait_for(lambda: harness.backlog() >= 5, what="mock batches")
    assert harness.fake.count("openai") == 0  # selection never sends cycles to an unserved queue


def test_two_producers_on_one_redis_keep_to_their_own_work(
    redis_url: str, fake_llm: FakeLLM, tmp_path: Path
) -> None:
    """Same queue name (mock), one Redis, two producer ids with their own topic and
    concurrency: side by side each keeps >= 80% of its solo throughput, and neither worker
    ever gets the other's cycles (a cycle of another producer would end 'stale')."""
    producers: dict[str, Harness] = {}
    for pid in ("alpha", "beta"):
        (tmp_path / pid).mkdir()
        producers[pid] = Harness(redis_url, fake_llm, tmp_path / pid, providers={"PRODUCER_ID": pid})
        producers[pid].env["PRODUCER_MOCK_LATENCY_MS"] = "100"
    concurrency = {"alpha": 4, "beta": 2}

    def rates(window_s: float = 6.0) -> dict[str, float]:
        time.sleep(2)  # settle
        before = {pid: h.fleet.read_counters().get("batches_appended", 0) for pid, h in producers.items()}
        time.sleep(window_s)
        after = {pid: h.fleet.read_counters().get("batches_appended", 0) for pid, h in producers.items()}
        return {pid: (after[pid] - before[pid]) / window_s for pid in producers}

    try:
        for pid, h in producers.items():
            h.processes.worker(f"w-{pid}", "mock", concurrency=8)
        for h in producers.values():
            h.wait_workers(1)
        a, b = producers["alpha"], producers["beta"]
        a.start({"mock": 1.0}, topic="alpha things", concurrency=concurrency["alpha"])
        alpha_solo = rates()["alpha"]
        b.start({"mock": 1.0}, topic="beta things", concurrency=concurrency["beta"])
        together = rates()
        worker_logs = {pid: h.processes.log(f"w-{pid}") for pid, h in producers.items()}
        control.stop(a.fleet)
        beta_solo = rates()["beta"]
        print(
            f"alpha {alpha_solo:.1f}/s solo, {together['alpha']:.1f}/s together; "
            f"beta {beta_solo:.1f}/s solo, {together['beta']:.1f}/s together"
        )
        assert together["alpha"] >= 0.8 * alpha_solo, (alpha_solo, together)  # before the prefix: ~0.4/s
        assert together["beta"] >= 0.8 * beta_solo, (beta_solo, together)
        for pid, h in producers.items():
            assert "'stale'" not in worker_logs[pid]  # no cycle of the other producer ever arrived
            entries = h.fleet.redis.xrange(h.fleet.keys.batches)
            assert entries and all(f'"topic":"{pid} things"' in fields["data"] for _, fields in entries)
            assert {w.split("@")[0] for w in h.fleet.live_workers()} == {f"w-{pid}"}  # its own worker only
            assert h.fleet.serving_slots()["mock"] == 8  # the worker's -c, for autoscaling
        client = a.fleet.redis
        assert (
            client.exists("prod:alpha:broker:_kombu.binding.mock", "prod:beta:broker:_kombu.binding.mock")
            == 2
        )
        assert not client.exists("mock", "_kombu.binding.mock")  # nothing outside the producers' prefixes
    finally:
        for h in producers.values():
            h.processes.stop_all()


def test_two_beats_schedule_once_and_the_standby_takes_over_a_killed_leader(
    harness: Harness, fake_llm: FakeLLM
) -> None:
    """Health checks (interval 1 s) of an Unhealthy provider, counted at the fake server:
    two beats send them once per interval, not twice; kill -9 the leader and the other
    carries on within one interval."""
    fake_llm.set("openai", mode="status", status=500)  # stays Unhealthy: every probe fails
    harness.processes.worker("w1", "openai", concurrency=4)
    harness.wait_workers(1)
    for _ in range(harness.settings.unhealthy_after):
        outcomes.record_outcome(harness.fleet, harness.settings, "openai", success=False, error="HTTP 500")
    beats = {
        name: harness.processes.spawn(name, [*CELERY, "beat", "--loglevel", "INFO"]) for name in ("b1", "b2")
    }

    def probes() -> list[float]:
        return [r.at for r in fake_llm.requests if "/models/" in r.path]

    wait_for(lambda: len(probes()) >= 2, timeout_s=60, what="health checks")
    first = len(probes())
    time.sleep(6)
    sent = len(probes()) - first
    assert 3 <= sent <= 8, sent  # ~6 at one per second; two schedulers would send ~12
    holder = str(harness.fleet.redis.get(harness.fleet.keys.beat_lease))
    leader = next(name for name, p in beats.items() if f":{p.pid}:" in holder)
    os.kill(beats[leader].pid, signal.SIGKILL)
    killed = time.time()
    wait_for(lambda: any(t > killed + 0.3 for t in probes()), timeout_s=10, what="the standby's first probe")
    taken_over = min(t for t in probes() if t > killed + 0.3) - killed
    assert taken_over < 2.5, taken_over  # lease 0.75 s + renewal 0.25 s + the 1 s interval, with slack
    time.sleep(4)
    after = [t for t in probes() if t > killed + taken_over + 0.1]
    assert 2 <= len(after) <= 6, after  # one scheduler again, at one per second
    standby = next(name for name in beats if name != leader)
    assert "schedules now" in harness.processes.log(standby)


def test_a_sentinel_failover_mid_run_needs_no_operator(tmp_path: Path, fake_llm: FakeLLM) -> None:
    """Worker and beat through Redis Sentinel (state, broker and results); kill -9 the master
    mid-run: the replica is promoted and batches keep coming, nobody restarted."""
    setup = SentinelSetup().start()
    try:
        h = Harness(setup.env["REDIS_URL"], fake_llm, tmp_path, providers=setup.env)
        worker = h.processes.worker("w1", "mock", concurrency=8)
        h.processes.beat()
        h.wait_workers(1)
        h.start({"mock": 1.0}, concurrency=4)
        wait_for(lambda: h.backlog() >= 30, what="batches through the Sentinel-managed master")

        def backlog() -> int:
            try:
                return h.backlog()
            except StateError:  # between the kill and the promotion
                return -1

        appended = h.fleet.read_counters()["batches_appended"]
        setup.kill_master()
        killed = time.monotonic()
        took = failed_over(setup)

        def appended_now() -> int:
            try:
                return int(h.fleet.read_counters().get("batches_appended", 0))
            except StateError:  # between the kill and the promotion
                return -1

        # generation resumed within 30 s of the kill (counted on the promoted replica, which
        # holds the counter as last replicated)
        wait_for(lambda: appended_now() > appended, timeout_s=30, what="a batch after the failover")
        resumed = time.monotonic() - killed
        after_failover = backlog()
        wait_for(lambda: backlog() >= after_failover + 30, timeout_s=60, what="30 batches after the failover")
        assert worker.poll() is None  # the worker reconnected by itself
        assert "Unrecoverable error" not in h.processes.log("w1")
        print(f"failover took {took:.1f} s; generation resumed {resumed:.1f} s after the kill")
    finally:
        h.processes.stop_all()
        setup.stop()
