"""The loops of one orchestrator connection: read control frames, forward batches, report status.

Any loop ending ends the connection; the bridge (``bridge.py``) then reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from orchestrator_bridge.convert import batch_message
from orchestrator_bridge.errors import ConnectionClosedError, FrameTooLargeError, ProtocolError
from orchestrator_bridge.protocol import codec
from orchestrator_bridge.protocol.framing import frame, read_frame
from orchestrator_bridge.protocol.messages import (
    AttributeBatch,
    ErrorStatus,
    ProducerMessage,
    ProducerState,
    ProducerStatus,
    ProducerStatusType,
)
from producer_tasks.clock import now_ms
from producer_tasks.errors import ProducerError
from producer_tasks.records import Phase
from producer_tasks.state import stream
from producer_tasks.state.scripts import ScriptCall

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from typing import ParamSpec, TypeVar

    from orchestrator_bridge.protocol.messages import ControlMessage, ProducerMessage, ProducerStatus
    from orchestrator_bridge.resend import ResendWindow
    from producer_tasks.settings import Settings
    from producer_tasks.state.fleet import Fleet

    P = ParamSpec("P")
    R = TypeVar("R")

log = logging.getLogger(__name__)
PENDING_RESEND_IDLE_MS = 30_000
READ_BLOCK_MS = 500
READ_COUNT = 200
# After a read that did not fill its count, wait this long before the next one: batches
# then go out several per read, write and acknowledgement (each a thread hop and a Redis
# round trip) instead of one each. A full read (a backlog) is followed at once. Idle, the
# read blocks as before; it adds at most this much to a batch's way to the orchestrator.
LINGER_S = 0.25
PHASE_POLL_S = 1.0  # the status loop reads the phase itself when no stream read brought it
FLUSH_TIMEOUT_S = 5.0  # how long a Stopped status waits for the batches before it
WRITE_STALL_S = 30.0


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
    state_restores: int = 0
    batches_resent: int = 0
    last_error: str = ""
    connected: bool = False


class Host(Protocol):
    """What a connection needs of the bridge that owns it (``bridge.Bridge``): this narrow
    interface, so that the connection does not import the bridge."""

    settings: Settings
    fleet: Fleet
    consumer: str
    counters: BridgeCounters
    window: ResendWindow
    stopping: asyncio.Event
    on_connected: Callable[[], Awaitable[None]] | None

    async def in_thread(self, func: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R: ...
    def status_message(self, status: ProducerStatusType) -> ProducerStatus: ...
    async def phase_status(self, phase: Phase | None = None) -> ProducerStatusType: ...
    async def current_status(self) -> ProducerStatus: ...
    async def publish_counters(self) -> None: ...
    async def handle(self, message: ControlMessage) -> str | None: ...
    async def restore_if_lost(self, phase: ProducerStatusType) -> bool: ...


class Connection:
    """The loops of one connection; any of them ending ends the connection."""

    def __init__(self, bridge: Host, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.bridge = bridge
        self.reader = reader
        self.writer = writer
        self.write_lock = asyncio.Lock()
        self.last_status: ProducerStatusType | None = None
        self.reads = 0  # stream reads started (0: the forward loop has not begun)
        self.drained_through = -1  # the last read after which nothing was left to forward
        self.drained = asyncio.Event()  # set when drained_through moves
        self.wake = asyncio.Event()  # cuts the forward loop's linger short
        # the phase the forward loop's last stream read saw, and when that read started
        self.phase_read: tuple[Phase, float] = (Phase.IDLE, 0.0)
        self.phase_event = asyncio.Event()  # set by each stream read
        # statuses are decided one at a time: the status loop's and the answers to frames
        self.deciding = asyncio.Lock()
        self.answered_at = 0.0  # when the last control frame had been applied and answered

    async def send(self, *messages: ProducerMessage) -> None:
        """Write frames and wait until the socket has taken them."""
        data = b"".join(frame(codec.encode(m)) for m in messages)
        async with self.write_lock:
            self.writer.write(data)
            # a peer that stopped reading: give up (reconnect, then re-send the window)
            await asyncio.wait_for(self.writer.drain(), timeout=WRITE_STALL_S)
        self.bridge.counters.frames_sent += len(messages)

    async def send_status(self, status: ProducerStatus) -> None:
        if status.status == ProducerState.STOPPED and self.last_status != ProducerState.STOPPED:
            await self.flush()
        await self.send(status)
        self.last_status = status.status

    async def serve(self) -> None:
        bridge = self.bridge
        await self.send_status(await bridge.current_status())  # first, on every connect
        await self.resend_window()
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
            # a frame is handled and answered before the status loop reports again, and what
            # it read before is dropped: no status reflects a frame half applied, or older. A
            # read that started while the frame was being applied may have read the phase
            # before it: dropped too (an Idle read there made the status loop re-apply the
            # topic as if Redis had lost it: test_the_bridge_reports_the_budget_stop_once)
            async with self.deciding:
                await self.handle(payload)
                self.answered_at = time.monotonic()

    async def handle(self, payload: bytes) -> None:
        bridge = self.bridge
        try:
            message = codec.decode_control(payload)
        except ProtocolError as exc:
            bridge.counters.bad_frames += 1
            bridge.counters.last_error = f"malformed frame: {exc}"
            log.error("malformed frame from the orchestrator (%d bytes): %s", len(payload), exc)
            await self.answer(ErrorStatus(f"malformed frame: {exc}"))
            return
        log.info("orchestrator: %s", type(message).__name__)
        try:
            reason = await bridge.handle(message)
        except ProducerError as exc:  # Redis unavailable: nothing was applied
            reason = f"not applied: {exc}"
        if reason is not None:
            bridge.counters.rejected_configurations += 1
            log.warning("rejected %s: %s", type(message).__name__, reason)
            await self.answer(ErrorStatus(reason))
        else:
            await self.answer(None)

    async def answer(self, error: ErrorStatus | None) -> None:
        """The status that answers a control frame: the error, or (None) the phase's. When
        Redis cannot say (health, phase) the answer is skipped: the status loop reports
        once it can, and the connection stays up."""
        bridge = self.bridge
        try:
            status = await bridge.phase_status() if error is None else error
            message = await bridge.in_thread(bridge.status_message, status)
        except ProducerError as exc:
            log.warning("no status sent in answer: %s", exc)
            return
        await self.send_status(message)

    async def next_phase(self) -> tuple[Phase, float]:
        """The phase as the forward loop's next stream read sees it (read in the same round
        trip, after the entries, at least every ``READ_BLOCK_MS``), and when that read
        started: never a read before this call. When no read comes for ``PHASE_POLL_S`` (the
        loop is busy forwarding or retrying), the phase is read here."""
        self.phase_event.clear()
        try:
            await asyncio.wait_for(self.phase_event.wait(), PHASE_POLL_S)
        except TimeoutError:
            started = time.monotonic()
            return await self.bridge.in_thread(self.bridge.fleet.read_phase), started
        return self.phase_read

    async def status_loop(self) -> None:
        bridge = self.bridge
        interval = bridge.settings.status_interval_s
        next_periodic = time.monotonic() + interval
        while True:
            try:
                phase, read_at = await self.next_phase()
                async with self.deciding:
                    if read_at < self.answered_at:
                        continue  # read before a control frame was handled: it may be older
                    status = await bridge.phase_status(phase)  # health only when sent
                    if await bridge.restore_if_lost(status):
                        continue
                    # a change (an Error report is followed by the phase's status again), or periodic
                    if status != self.last_status or time.monotonic() >= next_periodic:
                        await self.send_status(await bridge.in_thread(bridge.status_message, status))
                        await bridge.publish_counters()
                        next_periodic = time.monotonic() + interval
            except ProducerError as exc:
                log.warning("status: %s", exc)
                await asyncio.sleep(PHASE_POLL_S)

    async def forward_loop(self) -> None:
        """Pending entries first (re-sent after a crash), then new ones; each read first
        settles (acknowledges) what the previous one brought and was written."""
        bridge = self.bridge
        fleet = bridge.fleet
        pending = True
        handled: Handled | None = None  # written or dropped, not yet acknowledged
        while True:
            number = self.reads
            self.reads += 1
            started = time.monotonic()
            try:
                read = await bridge.in_thread(
                    stream.read_with_state,
                    fleet,
                    bridge.consumer,
                    pending=pending,
                    count=READ_COUNT,
                    block_ms=READ_BLOCK_MS,
                    settle=self.settle_call(handled),
                )
                if handled is not None:
                    self.settled(handled, read.settled)
                    handled = None
                entries, epoch = read.entries, read.epoch
                self.phase_read = (read.phase, started)
                self.phase_event.set()
                if pending and not entries:
                    entries = await bridge.in_thread(
                        stream.claim_orphans, fleet, bridge.consumer, idle_ms=PENDING_RESEND_IDLE_MS
                    )
                    pending = bool(entries)
                    if entries:  # read after the read above: the topic may have changed since
                        epoch = (await bridge.in_thread(fleet.read_state)).epoch
            except ProducerError as exc:  # what was handled stays pending: settled by a later read
                bridge.counters.last_error = str(exc)
                log.warning("batch stream: %s; retrying", exc)
                await asyncio.sleep(1)
                continue
            if entries:
                handled = await self.forward(entries, epoch)
            if pending or len(entries) >= READ_COUNT:
                continue  # a full read: more to read at once
            self.drained_through = number  # everything appended before this read is written
            self.drained.set()
            if entries:
                with contextlib.suppress(TimeoutError):  # a flush cuts it short
                    await asyncio.wait_for(self.wake.wait(), LINGER_S)
                self.wake.clear()

    def settle_call(self, handled: Handled | None) -> ScriptCall | None:
        """The acknowledgement of ``handled``, with the resend window's trim, for the next read."""
        if handled is None:
            return None
        bridge = self.bridge
        cut = bridge.window.trim(now_ms())
        return stream.settle_call(bridge.fleet, handled.done, written=handled.written, trim_to=cut)

    def settled(self, handled: Handled, window_ids: list[str]) -> None:
        """The window ids of the entries written (copied by the settle script, in order)."""
        sizes = (len(entry.data) for entry in handled.written)
        kept = zip(window_ids, sizes, strict=True)
        self.bridge.window.add((i, size) for i, size in kept if i)  # "": deleted meanwhile

    async def flush(self, timeout_s: float = FLUSH_TIMEOUT_S) -> None:
        """Write every batch appended until now before what comes next: a Stopped status must
        follow the last cycles' batches (the orchestrator may hang up on it)."""
        if self.reads == 0:  # the forward loop has not begun on this connection
            return
        after = self.reads  # a read that starts from now on sees them all
        self.wake.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while self.drained_through < after:
                    self.drained.clear()
                    await self.drained.wait()

    async def resend_window(self) -> None:
        """What was written on earlier connections may never have been read: send it again,
        oldest first (the orchestrator de-duplicates by attribute)."""
        bridge = self.bridge
        if not bridge.window.enabled:
            return
        kept = await bridge.in_thread(stream.window, bridge.fleet)
        epoch = (await bridge.in_thread(bridge.fleet.read_state)).epoch
        messages = [
            batch_message(bridge.settings.id, e.batch)
            for e in kept
            if e.batch is not None and e.epoch == epoch
        ]
        for start in range(0, len(messages), READ_COUNT):
            await self.send(*messages[start : start + READ_COUNT])
        if messages:
            bridge.counters.batches_resent += len(messages)
            log.info("re-sent %d batches of the resend window", len(messages))

    async def forward(self, entries: list[stream.Entry], epoch: int) -> Handled:
        """Write the current topic's batches; what to acknowledge (with the next read)."""
        bridge = self.bridge
        messages: list[AttributeBatch] = []
        written: list[stream.Entry] = []
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
            written.append(entry)
            done.append(entry.id)
        if messages:
            await self.send(*messages)  # written to the socket: now they may be acknowledged
            bridge.counters.batches_forwarded += len(messages)
            bridge.counters.attributes_forwarded += sum(len(m.attributes) for m in messages)
        return Handled(done, written if bridge.window.enabled else [])


@dataclass(frozen=True)
class Handled:
    """Entries the forward loop is done with: ``done`` all of them (acknowledged and
    deleted), ``written`` those written to the orchestrator (copied to the resend window)."""

    done: list[str]
    written: list[stream.Entry]
