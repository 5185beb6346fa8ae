"""The bridge: one process per producer id, the fleet's control plane.

It owns the TCP connection to the orchestrator: on every (re)connect it first sends
ProducerStatus; orchestrator frames become control-API calls (StartTopic,
UpdateConfiguration, Stop); the batch stream is drained through a consumer group into
AttributeBatch frames, each entry acknowledged only after its frame was written; status
goes out on every change and periodically. It reconnects forever with capped, jittered
backoff and survives refused or reset connections, malformed frames and Redis blips.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

from orchestrator_bridge import codec
from orchestrator_bridge.errors import ConnectionClosedError, DecodeError, FrameTooLargeError, ProtocolError
from orchestrator_bridge.framing import frame, read_frame
from orchestrator_bridge.messages import (
    AttributeBatch,
    BloomFilterStats,
    ErrorStatus,
    ProducerMessage,
    ProducerState,
    ProducerStatus,
    ProducerStatusType,
    StartTopic,
    Stop,
    UpdateConfiguration,
)
from producer_tasks import bloom, control, lanes, stream
from producer_tasks.errors import ProducerError
from producer_tasks.fleet import Fleet, now_ms
from producer_tasks.metrics import render_metrics
from producer_tasks.records import BatchRecord, Phase
from producer_tasks.settings import PROVIDERS, Settings, parse_addr

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")

PHASE_STATUS = {
    Phase.IDLE: ProducerState.IDLE,
    Phase.RUNNING: ProducerState.RUNNING,
    Phase.STOPPING: ProducerState.STOPPING,
    Phase.STOPPED: ProducerState.STOPPED,
}
PENDING_RESEND_IDLE_MS = 30_000
READ_BLOCK_MS = 500
READ_COUNT = 200
SHUTDOWN_GRACE_S = 5.0


@dataclass
class BridgeCounters:
    """What the bridge has done (exported as metrics and to ``producer status``)."""

    connects: int = 0
    frames_sent: int = 0
    batches_forwarded: int = 0
    attributes_forwarded: int = 0
    stale_batches_dropped: int = 0
    bad_frames: int = 0
    rejected_configurations: int = 0
    last_error: str = ""
    connected: bool = False


def batch_message(producer_id: str, batch: BatchRecord) -> AttributeBatch:
    stats = None
    if batch.bloom is not None:
        stats = BloomFilterStats.from_counts(
            total_candidates=batch.bloom.total_candidates,
            filtered_candidates=batch.bloom.filtered_candidates,
            last_filter_update=batch.bloom.last_filter_update_ms,
        )
    return AttributeBatch(
        producer_id=producer_id,
        attributes=tuple(batch.attributes),
        provider_used=batch.provider_used,
        generation_metadata=batch.metadata.to_wire(),
        bloom_stats=stats,
    )


class Bridge:
    """The bridge's loops over one connection at a time."""

    def __init__(
        self,
        settings: Settings,
        fleet: Fleet,
        dispatcher: lanes.Dispatcher,
        *,
        rng: random.Random | None = None,
        on_connected: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.settings = settings
        self.fleet = fleet
        self.dispatcher = dispatcher
        self.rng = rng or random.Random()
        self.host, self.port = parse_addr(settings.orchestrator_addr)
        self.consumer = f"bridge-{settings.id}"
        self.counters = BridgeCounters()
        self.stopping = asyncio.Event()
        self.error_status: str | None = None  # sent once, then the phase's status again
        self.on_connected = on_connected

    # --- helpers ----------------------------------------------------------------------
    async def redis(self, func: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Run a (blocking) Redis call off the event loop."""
        return await asyncio.to_thread(func, *args, **kwargs)

    def status_message(self, status: ProducerStatusType) -> ProducerStatus:
        configured = [p for p in PROVIDERS if self.settings.is_configured(p)]
        health = {p: h.to_wire() for p, h in self.fleet.read_healths(configured).items()}
        return ProducerStatus(self.settings.id, status, health)

    async def phase_status(self) -> ProducerStatusType:
        state = await self.redis(self.fleet.read_state)
        return PHASE_STATUS[state.phase]

    async def current_status(self) -> ProducerStatus:
        return await self.redis(self.status_message, await self.phase_status())

    async def publish_counters(self) -> None:
        c = self.counters
        mapping = {
            "connected": int(c.connected),
            "orchestrator": self.settings.orchestrator_addr,
            "connects": c.connects,
            "frames_sent": c.frames_sent,
            "batches_forwarded": c.batches_forwarded,
            "attributes_forwarded": c.attributes_forwarded,
            "stale_batches_dropped": c.stale_batches_dropped,
            "bad_frames": c.bad_frames,
            "rejected_configurations": c.rejected_configurations,
            "last_error": c.last_error[:300],
            "updated_ms": now_ms(),
        }
        with contextlib.suppress(ProducerError):
            await self.redis(self.fleet.redis.hset, self.fleet.keys.bridge, mapping=mapping)

    # --- the connection ---------------------------------------------------------------
    async def open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        context = None
        if self.settings.orchestrator_tls:
            context = ssl.create_default_context(cafile=self.settings.orchestrator_tls_ca)
        return await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port, ssl=context, limit=2**20), timeout=10
        )

    async def run(self) -> None:
        """Connect, serve, reconnect: until ``stopping`` is set."""
        with contextlib.suppress(ProducerError):
            await self.redis(stream.ensure_group, self.fleet)
        metrics = None
        if self.settings.metrics_port is not None:
            metrics = await self.serve_metrics(self.settings.metrics_port)
        try:
            await self.connect_forever()
        finally:
            if metrics is not None:
                metrics.close()

    async def connect_forever(self) -> None:
        attempt = 0
        while not self.stopping.is_set():
            try:
                reader, writer = await self.open()
            except (OSError, TimeoutError) as exc:
                attempt += 1
                delay = min(self.settings.reconnect_max_s, 0.2 * 2 ** min(attempt, 10))
                delay = self.rng.uniform(delay / 2, delay)
                self.counters.last_error = f"connect to {self.settings.orchestrator_addr}: {exc}"
                log.warning(
                    "cannot reach the orchestrator at %s (%s); retrying in %.1fs",
                    self.settings.orchestrator_addr,
                    exc,
                    delay,
                )
                await self.publish_counters()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), timeout=delay)
                continue
            attempt = 0
            self.counters.connects += 1
            self.counters.connected = True
            log.info("connected to the orchestrator at %s", self.settings.orchestrator_addr)
            try:
                await Connection(self, reader, writer).serve()
            finally:
                self.counters.connected = False
                writer.close()
                with contextlib.suppress(OSError, asyncio.CancelledError, ssl.SSLError):
                    await asyncio.wait_for(writer.wait_closed(), timeout=2)
                await self.publish_counters()

    # --- control ----------------------------------------------------------------------
    async def handle(self, message: ProducerMessage) -> str | None:
        """Apply one orchestrator message; the reason when it was rejected."""
        settings, fleet = self.settings, self.fleet
        if isinstance(message, StartTopic):
            cfg = message.generation_config
            result = await self.redis(
                control.start_topic,
                fleet,
                settings,
                topic=message.topic,
                prompt=message.prompt,
                weights=message.provider_weights,
                temperature=cfg.temperature,
                max_tokens=cfg.max_tokens,
                batch_size=cfg.batch_size,
            )
        elif isinstance(message, UpdateConfiguration):
            if message.bloom_filter is not None:
                try:
                    await self.redis(bloom.load_wire, fleet, message.bloom_filter)
                except DecodeError as exc:
                    return f"invalid bloom filter: {exc}"
            if message.prompt is None and message.provider_weights is None:
                return None
            result = await self.redis(
                control.update_configuration,
                fleet,
                settings,
                prompt=message.prompt,
                weights=message.provider_weights,
            )
        elif isinstance(message, Stop):
            result = await self.redis(control.stop, fleet)
        else:
            log.warning(
                "ignoring %s from the orchestrator (a producer-to-orchestrator message)",
                type(message).__name__,
            )
            return None
        for warning in result.warnings:
            log.warning("%s", warning)
        if not result.accepted:
            return result.reason
        if isinstance(message, StartTopic | UpdateConfiguration):
            await self.redis(self.reconcile)
        return None

    async def serve_metrics(self, port: int) -> asyncio.Server:
        """A minimal HTTP endpoint: ``GET /metrics`` in the Prometheus text format."""

        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
                path = request.split(b" ", 2)[1] if request.count(b" ") >= 2 else b"/"
                if path.split(b"?")[0] != b"/metrics":
                    status, body = b"404 Not Found", b"try /metrics\n"
                else:
                    try:
                        status, body = b"200 OK", (await self.redis(render_metrics, self.fleet)).encode()
                    except ProducerError as exc:
                        status, body = b"503 Service Unavailable", f"{exc}\n".encode()
                writer.write(
                    b"HTTP/1.1 "
                    + status
                    + b"\r\nContent-Type: text/plain; version=0.0.4\r\n"
                    + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
                    + body
                )
                await writer.drain()
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(answer, "0.0.0.0", port)
        log.info("metrics on :%d/metrics", port)
        return server

    def reconcile(self) -> None:
        lanes.reconcile(
            self.fleet,
            self.dispatcher,
            queued_timeout_ms=round(max(60.0, 3 * self.settings.request_timeout_s) * 1000),
            adaptive=self.settings.selection == "adaptive",
            rng=self.rng,
        )


class Connection:
    """The loops of one connection; any of them ending ends the connection."""

    def __init__(self, bridge: Bridge, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.bridge = bridge
        self.reader = reader
        self.writer = writer
        self.write_lock = asyncio.Lock()
        self.last_status: ProducerStatusType | None = None

    async def send(self, *messages: ProducerMessage) -> None:
        """Write frames and wait until the socket has taken them."""
        data = b"".join(frame(codec.encode(m)) for m in messages)
        async with self.write_lock:
            self.writer.write(data)
            await self.writer.drain()
        self.bridge.counters.frames_sent += len(messages)

    async def send_status(self, status: ProducerStatus) -> None:
        await self.send(status)
        self.last_status = status.status

    async def serve(self) -> None:
        bridge = self.bridge
        await self.send_status(await bridge.current_status())  # first, on every connect
        await bridge.publish_counters()
        if bridge.on_connected is not None:
            await bridge.on_connected()
        tasks = [
            asyncio.create_task(self.read_loop(), name="read"),
            asyncio.create_task(self.forward_loop(), name="forward"),
            asyncio.create_task(self.status_loop(), name="status"),
            asyncio.create_task(bridge.stopping.wait(), name="shutdown"),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task.get_name() != "shutdown" and not task.cancelled() and task.exception():
                    exc = task.exception()
                    bridge.counters.last_error = f"{type(exc).__name__}: {exc}"
                    if isinstance(exc, ConnectionClosedError | ConnectionError | OSError):
                        log.warning("orchestrator connection lost: %s", exc)
                    elif isinstance(exc, FrameTooLargeError):
                        log.error("protocol error, closing the connection: %s", exc)
                    else:
                        log.error("bridge loop %s failed", task.get_name(), exc_info=exc)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def read_loop(self) -> None:
        bridge = self.bridge
        while True:
            payload = await read_frame(self.reader, max_frame_bytes=bridge.settings.max_frame_bytes)
            try:
                message = codec.decode(payload)
            except ProtocolError as exc:
                bridge.counters.bad_frames += 1
                bridge.counters.last_error = f"malformed frame: {exc}"
                log.error("malformed frame from the orchestrator (%d bytes): %s", len(payload), exc)
                error = ErrorStatus(f"malformed frame: {exc}")
                await self.send_status(await asyncio.to_thread(bridge.status_message, error))
                continue
            log.info("orchestrator: %s", type(message).__name__)
            try:
                reason = await bridge.handle(message)
            except ProducerError as exc:  # Redis unavailable: nothing was applied
                reason = f"not applied: {exc}"
            if reason is not None:
                bridge.counters.rejected_configurations += 1
                log.warning("rejected %s: %s", type(message).__name__, reason)
                await self.send_status(await asyncio.to_thread(bridge.status_message, ErrorStatus(reason)))
            else:
                await self.send_status(await bridge.current_status())

    async def status_loop(self) -> None:
        bridge = self.bridge
        interval = bridge.settings.status_interval_s
        next_periodic = time.monotonic() + interval
        while True:
            await asyncio.sleep(0.25)
            try:
                status = await bridge.phase_status()  # polled cheaply; health only when sent
                # a change (an Error report is followed by the phase's status again), or periodic
                if status != self.last_status or time.monotonic() >= next_periodic:
                    await self.send_status(await bridge.redis(bridge.status_message, status))
                    await bridge.publish_counters()
                    next_periodic = time.monotonic() + interval
            except ProducerError as exc:
                log.warning("status: %s", exc)

    async def forward_loop(self) -> None:
        """Pending entries first (re-sent after a crash), then new ones, acked after writing."""
        bridge = self.bridge
        fleet = bridge.fleet
        pending = True
        while True:
            try:
                entries = await bridge.redis(
                    stream.read,
                    fleet,
                    bridge.consumer,
                    pending=pending,
                    count=READ_COUNT,
                    block_ms=READ_BLOCK_MS,
                )
                if pending and not entries:
                    entries = await bridge.redis(
                        stream.claim_orphans, fleet, bridge.consumer, idle_ms=PENDING_RESEND_IDLE_MS
                    )
                    pending = bool(entries)
                if not entries:
                    continue
                epoch = (await bridge.redis(fleet.read_state)).epoch
            except ProducerError as exc:
                bridge.counters.last_error = str(exc)
                log.warning("batch stream: %s; retrying", exc)
                await asyncio.sleep(1)
                continue
            await self.forward(entries, epoch)

    async def forward(self, entries: list[stream.Entry], epoch: int) -> None:
        bridge = self.bridge
        messages: list[AttributeBatch] = []
        done: list[str] = []
        for entry in entries:
            if entry.batch is None or entry.epoch != epoch:
                if entry.batch is None:
                    log.error("dropping stream entry %s: %s", entry.id, entry.error)
                else:
                    bridge.counters.stale_batches_dropped += 1
                done.append(entry.id)
                continue
            messages.append(batch_message(bridge.settings.id, entry.batch))
            done.append(entry.id)
        if messages:
            await self.send(*messages)  # written to the socket: now they may be acknowledged
            bridge.counters.batches_forwarded += len(messages)
            bridge.counters.attributes_forwarded += sum(len(m.attributes) for m in messages)
        while True:
            try:
                await bridge.redis(stream.acknowledge, bridge.fleet, done)
                return
            except ProducerError as exc:  # not acked yet: they stay pending and are re-sent
                log.warning("acknowledge: %s; retrying", exc)
                await asyncio.sleep(1)
