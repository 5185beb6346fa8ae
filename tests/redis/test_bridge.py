"""The bridge in-process against a scripted orchestrator socket and a real redis-server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import struct
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trustme
from prometheus_client.parser import text_string_to_metric_families

from orchestrator_bridge import (
    AttributeBatch,
    ErrorStatus,
    GenerationConfig,
    ProducerState,
    ProducerStatus,
    StartTopic,
    Stop,
    UpdateConfiguration,
    decode,
    encode,
    read_frame,
)
from orchestrator_bridge.bridge import Bridge
from orchestrator_bridge.cli.embedded import EmbeddedRedis, free_port
from orchestrator_bridge.convert import filter_to_wire
from orchestrator_bridge.errors import ConnectionClosedError
from orchestrator_bridge.protocol.framing import frame
from producer_tasks.bloomhash import BloomFilter
from producer_tasks.records import BatchRecord, BloomCounts, MetadataRecord, Phase, ProviderStatus
from producer_tasks.settings import Settings, load_settings
from producer_tasks.state import bloom, control, outcomes, stream
from producer_tasks.state.fleet import Fleet
from tests.conftest import RecordingDispatcher, open_fleet
from tests.harness import eventually

pytestmark = pytest.mark.timeout(60)
START = StartTopic("cheese", "List {batch_size} {topic}", {"mock": 1.0}, GenerationConfig(0.7, 100, 10))


@dataclass
class FakeOrchestrator:
    """A scripted orchestrator: records every frame, lets the test send anything."""

    connections: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = field(
        default_factory=asyncio.Queue
    )
    server: asyncio.Server | None = None
    writers: list[asyncio.StreamWriter] = field(default_factory=list)

    async def start(self) -> int:
        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.writers.append(writer)
            await self.connections.put((reader, writer))

        self.server = await asyncio.start_server(accept, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.wait_for(self.connections.get(), timeout=15)

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.close()
            with contextlib.suppress(OSError, ConnectionError):
                await writer.wait_closed()
        await self.server.wait_closed()


async def next_message(reader: asyncio.StreamReader, kind: type, *, timeout: float = 10) -> object:
    """The next message of ``kind`` (others, e.g. periodic statuses, are skipped)."""

    async def find() -> object:
        while True:
            message = decode(await read_frame(reader))
            if isinstance(message, kind):
                return message

    return await asyncio.wait_for(find(), timeout=timeout)


async def status_matching(reader: asyncio.StreamReader, wanted: object) -> ProducerStatus:
    async def find() -> ProducerStatus:
        while True:
            message = decode(await read_frame(reader))
            if isinstance(message, ProducerStatus) and (
                message.status == wanted
                or (wanted is ErrorStatus and isinstance(message.status, ErrorStatus))
            ):
                return message

    return await asyncio.wait_for(find(), timeout=10)


def send(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(data)


@dataclass
class Setup:
    bridge: Bridge
    fleet: Fleet
    orchestrator: FakeOrchestrator
    dispatcher: RecordingDispatcher


@contextlib.asynccontextmanager
async def running_bridge(redis_url: str, **env: str) -> AsyncIterator[Setup]:
    """A bridge (in this loop) connected to a scripted orchestrator; ``env``: more settings."""
    orchestrator = FakeOrchestrator()
    port = await orchestrator.start()
    settings = load_settings(
        {
            "REDIS_URL": redis_url,
            "ORCHESTRATOR_ADDR": f"127.0.0.1:{port}",
            "PRODUCER_STATUS_INTERVAL_S": "0.5",
            "PRODUCER_MAX_FRAME_BYTES": "65536",
            "PRODUCER_RECONNECT_MAX_S": "0.5",
            **env,
        }
    )
    fleet = open_fleet(settings)
    fleet.heartbeat("w1@test", ["mock"])
    dispatcher = RecordingDispatcher()
    bridge = Bridge(settings, fleet, dispatcher)
    task = asyncio.create_task(bridge.run())
    try:
        yield Setup(bridge, fleet, orchestrator, dispatcher)
    finally:
        bridge.stopping.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(task, timeout=10)
        await orchestrator.close()


@pytest.fixture
async def setup(redis_url: str) -> AsyncIterator[Setup]:
    async with running_bridge(redis_url) as made:
        yield made


def batch(epoch: int, n: int, *, bloom_counts: BloomCounts | None = None) -> BatchRecord:
    return BatchRecord(
        epoch=epoch,
        topic="cheese",
        attributes=[f"Cheese {n}-{i}" for i in range(20)],
        provider_used="mock",
        metadata=MetadataRecord(
            response_time_ms=12, prompt_tokens=5, completion_tokens=40, provider_status=ProviderStatus.HEALTHY
        ),
        bloom=bloom_counts,
    )


async def test_status_first_then_start_topic_runs_the_fleet(setup: Setup) -> None:
    reader, writer = await setup.orchestrator.connection()
    first = decode(await read_frame(reader))
    assert isinstance(first, ProducerStatus) and first.status is ProducerState.IDLE
    assert set(first.provider_health) == {"mock"}
    send(writer, frame(encode(START)))
    await status_matching(reader, ProducerState.RUNNING)
    state = setup.fleet.read_state()
    assert (state.topic, state.phase) == ("cheese", Phase.RUNNING)
    assert len(setup.dispatcher.sent) == state.concurrency  # lanes dispatched at once
    send(writer, frame(encode(Stop())))
    await status_matching(reader, ProducerState.STOPPED)  # no lane was running


async def test_invalid_configuration_answers_error_and_keeps_the_previous(setup: Setup) -> None:
    reader, writer = await setup.orchestrator.connection()
    send(writer, frame(encode(START)))
    await status_matching(reader, ProducerState.RUNNING)
    bad = StartTopic("towns", "p", {"mock": -1.0}, GenerationConfig(0.7, 100, 10))
    send(writer, frame(encode(bad)))
    error = await status_matching(reader, ErrorStatus)
    assert isinstance(error.status, ErrorStatus) and "finite number >= 0" in error.status.reason
    await status_matching(reader, ProducerState.RUNNING)  # and then its real status again
    send(writer, frame(encode(UpdateConfiguration(provider_weights={"mock": 0.0}))))
    error = await status_matching(reader, ErrorStatus)
    assert isinstance(error.status, ErrorStatus) and "weight above 0" in error.status.reason
    send(writer, frame(encode(UpdateConfiguration(bloom_filter=b"\x07garbage"))))
    error = await status_matching(reader, ErrorStatus)
    assert isinstance(error.status, ErrorStatus) and "invalid bloom filter" in error.status.reason
    state = setup.fleet.read_state()
    assert (state.topic, state.weights) == ("cheese", {"mock": 1.0})


@pytest.mark.adversarial
@pytest.mark.parametrize(
    ("name", "data", "log_text"),
    [
        ("unknown variant", frame(b"\x09\x00\x00\x00"), "unknown ProducerMessage variant 9"),
        ("truncated payload", frame(encode(START)[:-3]), "truncated payload"),
        ("random bytes", frame(bytes(range(7, 60))), "malformed frame"),
        ("trailing bytes", frame(encode(Stop()) + b"\x00"), "trailing bytes"),
    ],
)
async def test_a_bad_frame_is_logged_reported_and_survived(
    setup: Setup, caplog: pytest.LogCaptureFixture, name: str, data: bytes, log_text: str
) -> None:
    caplog.set_level(logging.INFO, logger="orchestrator_bridge")
    reader, writer = await setup.orchestrator.connection()
    await read_frame(reader)
    send(writer, data)
    error = await status_matching(reader, ErrorStatus)
    assert isinstance(error.status, ErrorStatus) and "malformed frame" in error.status.reason
    lines = [r for r in caplog.records if "malformed frame" in r.getMessage()]
    assert len(lines) == 1 and log_text in lines[0].getMessage(), name
    send(writer, frame(encode(START)))  # the same connection keeps working
    await status_matching(reader, ProducerState.RUNNING)
    assert setup.bridge.counters.bad_frames == 1


@pytest.mark.adversarial
async def test_a_2_gib_length_closes_and_reconnects(setup: Setup, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="orchestrator_bridge")
    reader, writer = await setup.orchestrator.connection()
    await read_frame(reader)
    send(writer, struct.pack(">I", 2**31))  # no body follows: it must not be awaited
    with pytest.raises(ConnectionClosedError):
        await asyncio.wait_for(read_frame(reader), timeout=10)
    lines = [r.getMessage() for r in caplog.records if "exceeds the maximum" in r.getMessage()]
    assert len(lines) == 1 and "2147483648 bytes" in lines[0]
    reader2, _ = await setup.orchestrator.connection()  # it reconnected
    first = decode(await read_frame(reader2))
    assert isinstance(first, ProducerStatus)


async def test_batches_are_forwarded_and_acknowledged_after_writing(setup: Setup) -> None:
    reader, writer = await setup.orchestrator.connection()
    send(writer, frame(encode(START)))
    await status_matching(reader, ProducerState.RUNNING)
    epoch = setup.fleet.read_state().epoch
    counts = BloomCounts(total_candidates=40, filtered_candidates=10, last_filter_update_ms=1_700_000_000_000)
    for n in range(5):
        assert stream.append(setup.fleet, batch(epoch, n, bloom_counts=counts if n == 4 else None))
    received = [await next_message(reader, AttributeBatch) for _ in range(5)]
    assert [m.attributes[0] for m in received] == [f"Cheese {n}-0" for n in range(5)]  # type: ignore[attr-defined]
    last = received[-1]
    assert isinstance(last, AttributeBatch) and last.bloom_stats is not None
    assert last.bloom_stats.filter_effectiveness == 0.25
    assert received[0].bloom_stats is None  # type: ignore[attr-defined]
    assert last.producer_id == "producer-1" and last.generation_metadata.tokens_used == 45
    # acknowledged and deleted: Redis does not grow
    await eventually(lambda: setup.fleet.backlog() == 0, what="the forwarded batches deleted")


async def test_the_last_batches_reach_the_orchestrator_before_the_stopped_status(setup: Setup) -> None:
    """The orchestrator may hang up on Stopped: a batch appended before the fleet stopped is
    written before that status, even while the forward loop waits for more batches."""
    reader, writer = await setup.orchestrator.connection()
    send(writer, frame(encode(START)))
    await status_matching(reader, ProducerState.RUNNING)
    epoch = setup.fleet.read_state().epoch
    for attempt in range(5):
        stream.append(setup.fleet, batch(epoch, 2 * attempt))
        await next_message(reader, AttributeBatch)  # forwarded: the loop now lingers for more
        stream.append(setup.fleet, batch(epoch, 2 * attempt + 1))  # the last cycle's batch
        control.stop(setup.fleet)  # no cycle in flight: Stopped at once
        assert setup.fleet.read_state().phase is Phase.STOPPED
        frames: list[object] = []
        while not frames or not _stopped(frames[-1]):
            frames.append(decode(await asyncio.wait_for(read_frame(reader), timeout=10)))
        names = [m.attributes[0] for m in frames if isinstance(m, AttributeBatch)]
        assert names == [f"Cheese {2 * attempt + 1}-0"], (attempt, frames)
        send(writer, frame(encode(START)))  # again, from a fresh topic
        await status_matching(reader, ProducerState.RUNNING)
        epoch = setup.fleet.read_state().epoch


def _stopped(message: object) -> bool:
    return isinstance(message, ProducerStatus) and message.status == ProducerState.STOPPED


async def test_batches_of_an_older_topic_are_never_forwarded(setup: Setup) -> None:
    reader, writer = await setup.orchestrator.connection()
    send(writer, frame(encode(START)))
    await status_matching(reader, ProducerState.RUNNING)
    old = setup.fleet.read_state().epoch
    setup.fleet.redis.xadd(
        setup.fleet.keys.batches, {"epoch": old - 1, "data": batch(old - 1, 99).model_dump_json()}
    )
    stream.append(setup.fleet, batch(old, 1))
    received = await next_message(reader, AttributeBatch)
    assert isinstance(received, AttributeBatch) and received.attributes[0] == "Cheese 1-0"
    await eventually(lambda: setup.fleet.backlog() == 0, what="both entries deleted")
    assert setup.bridge.counters.stale_batches_dropped == 1


async def test_pending_entries_are_resent_by_a_restarted_bridge(redis_url: str) -> None:
    orchestrator = FakeOrchestrator()
    port = await orchestrator.start()
    settings = load_settings({"REDIS_URL": redis_url, "ORCHESTRATOR_ADDR": f"127.0.0.1:{port}"})
    fleet = open_fleet(settings)
    fleet.heartbeat("w1@test", ["mock"])

    control.start_topic(
        fleet,
        settings,
        topic="cheese",
        prompt="p",
        weights={"mock": 1.0},
        temperature=0.7,
        max_tokens=100,
        batch_size=20,
    )
    epoch = fleet.read_state().epoch
    stream.ensure_group(fleet)
    for n in range(3):
        stream.append(fleet, batch(epoch, n))
    # a previous bridge read them and died before writing: they are pending, not acknowledged
    assert len(stream.read(fleet, "bridge-producer-1", pending=False, block_ms=100)) == 3
    stream.append(fleet, batch(epoch, 3))
    bridge = Bridge(settings, fleet, RecordingDispatcher())
    task = asyncio.create_task(bridge.run())
    reader, _ = await orchestrator.connection()
    received = [await next_message(reader, AttributeBatch) for _ in range(4)]
    assert sorted(m.attributes[0] for m in received) == [f"Cheese {n}-0" for n in range(4)]  # type: ignore[attr-defined]
    bridge.stopping.set()
    await asyncio.wait_for(task, timeout=10)
    await orchestrator.close()


async def test_bloom_filter_update_is_loaded(setup: Setup) -> None:
    reader, writer = await setup.orchestrator.connection()
    send(writer, frame(encode(START)))
    await status_matching(reader, ProducerState.RUNNING)
    orchestrator_filter = BloomFilter(1024, 4)
    orchestrator_filter.update(["Brie", "Comté"])
    send(
        writer, frame(encode(UpdateConfiguration(bloom_filter=filter_to_wire(orchestrator_filter).encode())))
    )
    await eventually(lambda: bloom.read_shape(setup.fleet) is not None, what="the filter loaded")
    shape = bloom.read_shape(setup.fleet)
    assert shape is not None and (shape.num_bits, shape.num_hashes) == (1024, 4)


@pytest.mark.adversarial
async def test_a_rejected_update_changes_nothing_not_even_its_bloom_filter(setup: Setup) -> None:
    """UpdateConfiguration with a valid filter and weights for an unknown provider: an Error,
    and the fleet's filter is the one it had (the protocol: a rejected configuration changes
    nothing); the same filter alone is then loaded."""
    reader, writer = await setup.orchestrator.connection()
    send(writer, frame(encode(START)))
    await status_matching(reader, ProducerState.RUNNING)
    before = bloom.read_shape(setup.fleet)
    orchestrator_filter = BloomFilter(2048, 3)
    orchestrator_filter.update(["Brie"])
    wire = filter_to_wire(orchestrator_filter).encode()
    send(writer, frame(encode(UpdateConfiguration(provider_weights={"nobody": 1.0}, bloom_filter=wire))))
    error = await status_matching(reader, ErrorStatus)
    assert "weight" in error.status.reason  # type: ignore[union-attr]
    assert bloom.read_shape(setup.fleet) == before
    send(writer, frame(encode(UpdateConfiguration(bloom_filter=wire))))
    await eventually(lambda: bloom.read_shape(setup.fleet) != before, what="the filter loaded")


async def test_metrics_endpoint(redis_url: str) -> None:
    orchestrator = FakeOrchestrator()
    port = await orchestrator.start()
    metrics_port = free_port()
    settings = load_settings(
        {
            "REDIS_URL": redis_url,
            "ORCHESTRATOR_ADDR": f"127.0.0.1:{port}",
            "PRODUCER_METRICS_PORT": str(metrics_port),
        }
    )
    fleet = open_fleet(settings)
    fleet.heartbeat("w1@test", ["mock"])

    outcomes.record_outcome(fleet, settings, "mock", success=True, response_ms=320.0)
    outcomes.record_outcome(fleet, settings, "mock", success=False, error="boom", response_ms=7000.0)
    bridge = Bridge(settings, fleet, RecordingDispatcher())
    task = asyncio.create_task(bridge.run())
    reader, writer = await orchestrator.connection()
    send(writer, frame(encode(START)))
    await status_matching(reader, ProducerState.RUNNING)

    async def get(path: str) -> tuple[str, str]:
        r, w = await asyncio.open_connection("127.0.0.1", metrics_port)
        w.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        data = (await r.read()).decode()
        w.close()
        head, _, body = data.partition("\r\n\r\n")
        return head.splitlines()[0], body

    status_line, body = await get("/metrics")
    assert status_line.split(" ")[1] == "200"
    families = {f.name: f for f in text_string_to_metric_families(body)}  # prometheus_client's own parser

    def value(family: str, sample: str, **labels: str) -> float:
        wanted = {"producer_id": "producer-1", **labels}
        (found,) = [s.value for s in families[family].samples if s.name == sample and s.labels == wanted]
        return found

    assert value("producer_requests", "producer_requests_total", provider="mock") == 2
    assert value("producer_request_failures", "producer_request_failures_total", provider="mock") == 1
    histogram = "producer_request_duration_seconds"
    assert families[histogram].type == "histogram"
    ok, failed = {"provider": "mock", "outcome": "success"}, {"provider": "mock", "outcome": "failure"}
    assert value(histogram, f"{histogram}_bucket", le="0.5", **ok) == 1
    assert value(histogram, f"{histogram}_bucket", le="0.25", **ok) == 0
    assert value(histogram, f"{histogram}_sum", **ok) == pytest.approx(0.32)
    assert value(histogram, f"{histogram}_bucket", le="5", **failed) == 0  # a failed call's time counts too
    assert value(histogram, f"{histogram}_bucket", le="10", **failed) == 1
    assert value(histogram, f"{histogram}_count", **failed) == 1
    assert value(histogram, f"{histogram}_sum", **failed) == pytest.approx(7.0)
    assert value("producer_backlog_batches", "producer_backlog_batches") == 0
    assert value("producer_bridge_connected", "producer_bridge_connected") == 1
    assert "PRODUCER_MAX_BACKLOG" in families["producer_backlog_limit_batches"].documentation
    assert families["producer_build_info"].samples[0].labels["version"]
    assert (await get("/other"))[0].split(" ")[1] == "404"
    r, w = await asyncio.open_connection("127.0.0.1", metrics_port)
    w.write(b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    assert (await r.read()).split(b"\r\n")[0].split(b" ")[1] == b"405"
    w.close()
    bridge.stopping.set()
    await asyncio.wait_for(task, timeout=10)
    await orchestrator.close()


async def test_tls_to_the_orchestrator(redis_url: str, tmp_path: Path) -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    received: asyncio.Queue[object] = asyncio.Queue()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await received.put(decode(await read_frame(reader)))
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0, ssl=server_context)
    port = server.sockets[0].getsockname()[1]
    settings = load_settings(
        {
            "REDIS_URL": redis_url,
            "ORCHESTRATOR_ADDR": f"127.0.0.1:{port}",
            "PRODUCER_ORCHESTRATOR_TLS": "true",
            "PRODUCER_ORCHESTRATOR_TLS_CA": str(ca_file),
        }
    )
    bridge = Bridge(settings, open_fleet(settings), RecordingDispatcher())
    task = asyncio.create_task(bridge.run())
    first = await asyncio.wait_for(received.get(), timeout=15)
    assert isinstance(first, ProducerStatus)  # the status frame arrived over TLS
    bridge.stopping.set()
    await asyncio.wait_for(task, timeout=10)
    server.close()
    await server.wait_closed()


@dataclass
class OwnRedis:
    """A redis-server of the test's own on a fixed port (to stop and start it again) and an
    orchestrator socket: what a bridge needs for an outage."""

    port: int
    server: EmbeddedRedis
    orchestrator: FakeOrchestrator
    settings: Settings
    fleet: Fleet

    @classmethod
    async def start(cls) -> OwnRedis:
        port = free_port()
        server = EmbeddedRedis(unix_socket=False, port=port).start()
        orchestrator = FakeOrchestrator()
        orchestrator_port = await orchestrator.start()
        settings = load_settings(
            {"REDIS_URL": server.url, "ORCHESTRATOR_ADDR": f"127.0.0.1:{orchestrator_port}"}
        )
        return cls(port, server, orchestrator, settings, open_fleet(settings))


async def test_a_redis_outage_is_survived(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    own = await OwnRedis.start()
    fleet = own.fleet
    fleet.heartbeat("w1@test", ["mock"])
    bridge = Bridge(own.settings, fleet, RecordingDispatcher())
    task = asyncio.create_task(bridge.run())
    try:
        reader, writer = await own.orchestrator.connection()
        send(writer, frame(encode(START)))
        await status_matching(reader, ProducerState.RUNNING)
        own.server.stop()  # the blip: Redis is gone (and, without persistence, forgets everything)
        await asyncio.sleep(3)
        assert not task.done()  # the bridge is still alive and connected
        assert any("batch stream" in r.getMessage() for r in caplog.records)
        own.server = EmbeddedRedis(unix_socket=False, port=own.port).start()  # back, but empty
        fleet.heartbeat("w1@test", ["mock"])
        # nothing is re-sent and nothing recreated by hand: the bridge re-applies its last
        # StartTopic and recreates the consumer group itself
        deadline = time.monotonic() + 15
        while fleet.read_state().topic != START.topic:
            assert time.monotonic() < deadline, "the topic was not re-applied"
            await asyncio.sleep(0.1)
        await status_matching(reader, ProducerState.RUNNING)
        assert any("re-applying the orchestrator's last StartTopic" in r.getMessage() for r in caplog.records)
        stream.append(fleet, batch(fleet.read_state().epoch, 7))
        received = await next_message(reader, AttributeBatch, timeout=15)
        assert isinstance(received, AttributeBatch) and received.attributes[0] == "Cheese 7-0"
    finally:
        bridge.stopping.set()
        await asyncio.wait_for(task, timeout=10)
        await own.orchestrator.close()
        own.server.stop()


async def test_a_control_frame_while_redis_is_down_leaves_the_connection_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    own = await OwnRedis.start()
    fleet = own.fleet
    serving = asyncio.Event()

    async def on_connected() -> None:
        serving.set()

    bridge = Bridge(own.settings, fleet, RecordingDispatcher(), on_connected=on_connected)
    task = asyncio.create_task(bridge.run())
    try:
        reader, writer = await own.orchestrator.connection()
        await status_matching(reader, ProducerState.IDLE)
        await asyncio.wait_for(serving.wait(), timeout=10)  # greeted: the loops run
        own.server.stop()
        send(writer, frame(encode(START)))  # not applied, and no status can be built to say so
        deadline = time.monotonic() + 10
        while not any("no status sent in answer" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline, "the frame was not answered"
            await asyncio.sleep(0.1)
        own.server = EmbeddedRedis(unix_socket=False, port=own.port).start()
        fleet.heartbeat("w1@test", ["mock"])
        send(writer, frame(encode(START)))  # the same connection takes it once Redis is back
        await status_matching(reader, ProducerState.RUNNING)
        assert bridge.counters.connects == 1 and fleet.read_state().topic == START.topic
    finally:
        bridge.stopping.set()
        await asyncio.wait_for(task, timeout=10)
        await own.orchestrator.close()
        own.server.stop()


async def test_a_bridge_started_before_redis_serves_once_redis_is_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    port = free_port()  # nothing listens there yet
    orchestrator = FakeOrchestrator()
    orchestrator_port = await orchestrator.start()
    settings = load_settings(
        {
            "REDIS_URL": f"redis://127.0.0.1:{port}/0",
            "ORCHESTRATOR_ADDR": f"127.0.0.1:{orchestrator_port}",
            "PRODUCER_RECONNECT_MAX_S": "0.5",
        }
    )
    fleet = open_fleet(settings)
    bridge = Bridge(settings, fleet, RecordingDispatcher())
    task = asyncio.create_task(bridge.run())
    redis_server = None
    try:
        await orchestrator.connection()  # it connects, cannot greet (no Redis), backs off
        await asyncio.sleep(2)
        assert not task.done()
        assert any("connection ended" in r.getMessage() for r in caplog.records)
        redis_server = EmbeddedRedis(unix_socket=False, port=port).start()
        fleet.heartbeat("w1@test", ["mock"])
        while True:  # a later connection greets with a status and takes the topic
            reader, writer = await orchestrator.connection()
            try:
                first = await next_message(reader, ProducerStatus, timeout=3)
                break
            except (TimeoutError, ConnectionClosedError, asyncio.IncompleteReadError):
                continue
        assert isinstance(first, ProducerStatus)
        send(writer, frame(encode(START)))
        await status_matching(reader, ProducerState.RUNNING)
        stream.append(fleet, batch(fleet.read_state().epoch, 3))
        received = await next_message(reader, AttributeBatch, timeout=15)
        assert isinstance(received, AttributeBatch) and received.attributes[0] == "Cheese 3-0"
    finally:
        bridge.stopping.set()
        await asyncio.wait_for(task, timeout=10)
        await orchestrator.close()
        if redis_server is not None:
            redis_server.stop()


async def test_an_orchestrator_that_accepts_and_closes_gets_a_growing_backoff(redis_url: str) -> None:
    accepted = 0

    async def accept_and_close(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        writer.close()

    server = await asyncio.start_server(accept_and_close, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings = load_settings({"REDIS_URL": redis_url, "ORCHESTRATOR_ADDR": f"127.0.0.1:{port}"})
    bridge = Bridge(settings, open_fleet(settings), RecordingDispatcher())
    task = asyncio.create_task(bridge.run())
    try:
        await asyncio.sleep(3)
        # 0.1-0.2, 0.2-0.4, 0.4-0.8, 0.8-1.6 s ...: a handful, not a storm (was 1,368 in 3 s)
        assert 2 <= accepted <= 8
    finally:
        bridge.stopping.set()
        await asyncio.wait_for(task, timeout=10)
        server.close()
        await server.wait_closed()


async def test_batches_an_orchestrator_never_read_are_resent_after_it_drops_the_connection(
    setup: Setup,
) -> None:
    reader, writer = await setup.orchestrator.connection()
    send(writer, frame(encode(START)))
    await status_matching(reader, ProducerState.RUNNING)
    epoch = setup.fleet.read_state().epoch
    # the orchestrator stops reading; the bridge keeps writing until the socket buffers are full
    sent = 3000
    for i in range(sent):
        stream.append(setup.fleet, batch(epoch, i))
    await asyncio.sleep(3)
    assert setup.fleet.backlog() < sent  # the kernel took many: acknowledged, not yet read
    writer.transport.abort()  # ... and it crashes with everything in its buffers unread
    reader, writer = await setup.orchestrator.connection()  # the bridge reconnects
    seen: set[str] = set()

    async def collect() -> None:
        while len(seen) < sent:
            message = decode(await read_frame(reader))
            if isinstance(message, AttributeBatch):
                seen.add(message.attributes[0])

    await asyncio.wait_for(collect(), timeout=30)
    assert seen == {f"Cheese {i}-0" for i in range(sent)}  # nothing lost, oldest re-sent first
    assert setup.bridge.counters.batches_resent > 0
