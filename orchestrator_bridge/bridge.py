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
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import ParamSpec, TypeVar

from orchestrator_bridge.connection import BridgeCounters, Connection
from orchestrator_bridge.convert import PHASE_STATUS, filter_to_load, health_to_wire
from orchestrator_bridge.errors import DecodeError
from orchestrator_bridge.metrics import serve_metrics
from orchestrator_bridge.probes import BridgeProbes
from orchestrator_bridge.protocol.bloomwire import BloomFilterWire
from orchestrator_bridge.protocol.messages import (
    ControlMessage,
    ErrorStatus,
    ProducerState,
    ProducerStatus,
    ProducerStatusType,
    StartTopic,
    Stop,
    UpdateConfiguration,
)
from orchestrator_bridge.resend import ResendWindow
from producer_tasks.addresses import parse_addr
from producer_tasks.clock import now_ms
from producer_tasks.errors import ConfigurationError, ProducerError
from producer_tasks.lanes import Dispatcher, Lanes
from producer_tasks.records import Phase
from producer_tasks.settings import Settings
from producer_tasks.state import bloom, control, stream
from producer_tasks.state.fleet import Fleet
from producer_tasks.state.status import write_bridge_status

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")

SHUTDOWN_GRACE_S = 5.0
DEAD_PEER_S = 30  # keepalive probes and TCP_USER_TIMEOUT: a dead or stuck peer is noticed within this
RECONNECT_BASE_S = 0.2
STABLE_CONNECTION_S = 10.0  # a connection that lasted this long resets the backoff


def detect_dead_peer(sock: socket.socket | None) -> None:
    """TCP keepalive and a user timeout, so a half-open peer is noticed within ``DEAD_PEER_S``."""
    if sock is None:
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPIDLE", 10), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 4)):
        if hasattr(socket, name):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)
    if hasattr(socket, "TCP_USER_TIMEOUT"):  # unacknowledged data: give up after this
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, DEAD_PEER_S * 1000)


class Bridge:
    """The bridge's loops over one connection at a time."""

    def __init__(
        self,
        settings: Settings,
        fleet: Fleet,
        dispatcher: Dispatcher,
        *,
        rng: random.Random | None = None,
        on_connected: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.settings = settings
        self.fleet = fleet
        self.rng = rng or random.Random()
        self.lanes = Lanes(fleet, dispatcher, settings, rng=self.rng)
        self.memory = ControlMemory()
        self.window = ResendWindow(
            max_age_ms=round(settings.resend_window_s * 1000), max_bytes=settings.resend_window_bytes
        )
        self.host, self.port = parse_addr(settings.orchestrator_addr)
        self.consumer = f"bridge-{settings.id}"
        self.counters = BridgeCounters()
        self.stopping = asyncio.Event()
        self.error_status: str | None = None  # sent once, then the phase's status again
        self.budget_reported_ms: int | None = None  # the budget stop already reported
        self.on_connected = on_connected

    # --- helpers ----------------------------------------------------------------------
    async def in_thread(self, func: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Run a blocking (state layer) call off the event loop."""
        return await asyncio.to_thread(func, *args, **kwargs)

    def status_message(self, status: ProducerStatusType) -> ProducerStatus:
        configured = list(self.settings.configured_providers)
        health = {p: health_to_wire(h) for p, h in self.fleet.read_healths(configured).items()}
        return ProducerStatus(self.settings.id, status, health)

    async def phase_status(self, phase: Phase | None = None) -> ProducerStatusType:
        """The phase's status (read unless given); once, when PRODUCER_BUDGET_USD stopped the
        fleet, an Error saying so (then the phase's status again: Stopping, Stopped)."""
        if phase is None:
            phase = await self.in_thread(self.fleet.read_phase)
        status: ProducerStatusType = PHASE_STATUS[phase]
        if self.settings.budget_usd is not None and phase in (Phase.STOPPING, Phase.STOPPED):
            spend = await self.in_thread(self.fleet.read_spend)
            if spend.reached_ms is not None and spend.reached_ms != self.budget_reported_ms:
                self.budget_reported_ms = spend.reached_ms
                return ErrorStatus(
                    f"budget reached: spent US${spend.usd:.4f} of US${spend.budget_usd:g} "
                    "(PRODUCER_BUDGET_USD): no new call starts; stopping"
                )
        return status

    async def current_status(self) -> ProducerStatus:
        return await self.in_thread(self.status_message, await self.phase_status())

    async def publish_counters(self) -> None:
        c = self.counters
        mapping: dict[str, str | int] = {
            "connected": int(c.connected),
            "orchestrator": self.settings.orchestrator_addr,
            "connects": c.connects,
            "frames_sent": c.frames_sent,
            "batches_forwarded": c.batches_forwarded,
            "attributes_forwarded": c.attributes_forwarded,
            "stale_batches_dropped": c.stale_batches_dropped,
            "bad_frames": c.bad_frames,
            "rejected_configurations": c.rejected_configurations,
            "state_restores": c.state_restores,
            "batches_resent": c.batches_resent,
            "last_error": c.last_error[:300],
            "updated_ms": now_ms(),
        }
        with contextlib.suppress(ProducerError):
            await self.in_thread(write_bridge_status, self.fleet, mapping)

    # --- the connection ---------------------------------------------------------------
    async def open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        context = None
        if self.settings.orchestrator_tls:
            context = ssl.create_default_context(cafile=self.settings.orchestrator_tls_ca)
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port, ssl=context, limit=2**20), timeout=10
        )
        detect_dead_peer(writer.get_extra_info("socket"))
        return reader, writer

    async def run(self) -> None:
        """Connect, serve, reconnect: until ``stopping`` is set."""
        with contextlib.suppress(ProducerError):
            await self.in_thread(stream.ensure_group, self.fleet)
            kept = await self.in_thread(stream.window, self.fleet)  # a restarted bridge re-sends these too
            self.window.reset((entry.id, len(entry.data)) for entry in kept)
        metrics = None
        probes = BridgeProbes(self.fleet, self.counters, self.settings.orchestrator_addr)
        ticking = asyncio.create_task(probes.tick_forever(self.stopping))
        if self.settings.metrics_port is not None:
            metrics = serve_metrics(
                self.fleet, self.settings.metrics_host, self.settings.metrics_port, probes.probes()
            )
        try:
            await self.connect_forever()
        finally:
            ticking.cancel()
            if metrics is not None:
                metrics.close()

    async def connect_forever(self) -> None:
        """Connect, serve, reconnect. Any error of a connection (the orchestrator, Redis, a
        bug) is logged once and followed by a backoff that grows until a connection has
        stayed up for ``STABLE_CONNECTION_S``; nothing but ``stopping`` ends this loop."""
        attempt = 0
        while not self.stopping.is_set():
            try:
                reader, writer = await self.open()
            except (OSError, TimeoutError) as exc:
                attempt += 1
                self.counters.last_error = f"connect to {self.settings.orchestrator_addr}: {exc}"
                await self.back_off(
                    attempt, f"cannot reach the orchestrator at {self.settings.orchestrator_addr}"
                )
                continue
            self.counters.connects += 1
            self.counters.connected = True
            connected_at = time.monotonic()
            log.info("connected to the orchestrator at %s", self.settings.orchestrator_addr)
            try:
                await Connection(self, reader, writer).serve()
            except Exception as exc:  # e.g. Redis down while greeting: carry on, never linger
                self.counters.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("connection ended: %s", self.counters.last_error)
            finally:
                self.counters.connected = False
                writer.close()
                with contextlib.suppress(OSError, asyncio.CancelledError, ssl.SSLError):
                    await asyncio.wait_for(writer.wait_closed(), timeout=2)
                await self.publish_counters()
            if time.monotonic() - connected_at >= STABLE_CONNECTION_S:
                attempt = 0
            elif not self.stopping.is_set():
                attempt += 1
                await self.back_off(attempt, "the connection ended early")

    async def back_off(self, attempt: int, why: str) -> None:
        """Wait a capped, jittered, exponentially growing delay (or until stopping)."""
        ceiling = min(self.settings.reconnect_max_s, RECONNECT_BASE_S * 2 ** min(attempt, 10))
        delay = self.rng.uniform(ceiling / 2, ceiling)
        log.warning("%s; retrying in %.1fs", why, delay)
        await self.publish_counters()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), timeout=delay)

    # --- control ----------------------------------------------------------------------
    async def handle(self, message: ControlMessage) -> str | None:
        """Apply one orchestrator message; the reason when it was rejected."""
        settings, fleet = self.settings, self.fleet
        if isinstance(message, StartTopic):
            cfg = message.generation_config
            result = await self.in_thread(
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
        elif isinstance(message, UpdateConfiguration):  # all of it checked before any of it applies
            loaded = None
            if message.bloom_filter is not None:
                try:
                    loaded = bloom.check(filter_to_load(BloomFilterWire.decode(message.bloom_filter)))
                except (DecodeError, ConfigurationError) as exc:
                    return f"invalid bloom filter: {exc}"
            result = control.ControlResult(True)
            if message.prompt is not None or message.provider_weights is not None:
                result = await self.in_thread(
                    control.update_configuration,
                    fleet,
                    settings,
                    prompt=message.prompt,
                    weights=message.provider_weights,
                )
            if loaded is not None and result.accepted:
                await self.in_thread(bloom.load, fleet, loaded)
        else:
            result = await self.in_thread(control.stop, fleet)
        for warning in result.warnings:
            log.warning("%s", warning)
        if not result.accepted:
            return result.reason
        self.memory.accepted(message)
        if isinstance(message, StartTopic) or (
            isinstance(message, UpdateConfiguration)
            and (message.prompt, message.provider_weights) != (None, None)
        ):
            await self.in_thread(self.lanes.reconcile)
        return None

    async def restore_if_lost(self, phase: ProducerStatusType) -> bool:
        """Redis came back empty (restart without persistence, failover, FLUSHALL) while the
        orchestrator's topic is still in force: re-apply what it last sent. True if done."""
        replay = self.memory.replay()
        if phase is not ProducerState.IDLE or not replay:
            return False
        self.counters.state_restores += 1
        log.warning("the fleet state is gone from Redis: re-applying the orchestrator's last StartTopic")
        with contextlib.suppress(ProducerError):
            await self.in_thread(stream.ensure_group, self.fleet)
        for message in replay:
            reason = await self.handle(message)
            if reason is not None:
                log.error("could not re-apply %s: %s", type(message).__name__, reason)
        await self.publish_counters()
        return True


@dataclass
class ControlMemory:
    """The control messages in force: the last accepted StartTopic and what updated it."""

    start: StartTopic | None = None
    update: UpdateConfiguration = field(default_factory=UpdateConfiguration)

    def accepted(self, message: ControlMessage) -> None:
        if isinstance(message, StartTopic):
            same_topic = self.start is not None and self.start.topic == message.topic
            bloom_filter = self.update.bloom_filter if same_topic else None
            self.start, self.update = message, UpdateConfiguration(bloom_filter=bloom_filter)
        elif isinstance(message, UpdateConfiguration):
            self.update = UpdateConfiguration(
                prompt=message.prompt if message.prompt is not None else self.update.prompt,
                provider_weights=message.provider_weights
                if message.provider_weights is not None
                else self.update.provider_weights,
                bloom_filter=message.bloom_filter
                if message.bloom_filter is not None
                else self.update.bloom_filter,
            )
        elif isinstance(message, Stop):
            self.start, self.update = None, UpdateConfiguration()

    def replay(self) -> list[ControlMessage]:
        if self.start is None:
            return []
        return [self.start, self.update] if self.update != UpdateConfiguration() else [self.start]
