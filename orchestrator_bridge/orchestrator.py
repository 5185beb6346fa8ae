"""The reference orchestrator: a development and test tool speaking the real protocol.

It listens; sends StartTopic to every producer that connects; accepts AttributeBatch,
de-duplicates by the protocol's normalisation and appends unique attributes to a JSONL
file (text, provider, producer id, time); periodically sends a bloom filter of what it
accepted; sends Stop after ``count`` unique attributes or ``duration`` seconds; and
reports progress.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from orchestrator_bridge.convert import filter_to_wire
from orchestrator_bridge.errors import BridgeError, ProtocolError
from orchestrator_bridge.protocol import codec
from orchestrator_bridge.protocol.framing import DEFAULT_MAX_FRAME_BYTES, frame, read_frame
from orchestrator_bridge.protocol.messages import (
    AttributeBatch,
    ErrorStatus,
    GenerationConfig,
    ProducerState,
    ProducerStatus,
    StartTopic,
    Stop,
    UpdateConfiguration,
)
from producer_tasks.bloomhash import BloomFilter, normalize

log = logging.getLogger(__name__)
DEFAULT_PROMPT = "List {batch_size} distinct {topic}. Only the names, one per line."
STDOUT = Path("-")  # as an output: this process's standard output


@dataclass(frozen=True)
class OrchestratorOptions:
    topic: str
    prompt: str = DEFAULT_PROMPT
    weights: dict[str, float] = field(default_factory=lambda: {"mock": 1.0})
    batch_size: int = 20
    max_tokens: int = 1024
    temperature: float = 0.9
    count: int | None = None
    duration_s: float | None = None
    output: Path | None = None
    batch_log: Path | None = None  # every batch received (tests count them)
    bloom_interval_s: float | None = 5.0
    bloom_capacity: int = 1_000_000
    bloom_error_rate: float = 0.001
    stop_grace_s: float = 30.0


@dataclass
class Progress:
    """What the orchestrator has seen so far."""

    started: float = field(default_factory=time.monotonic)
    batches: int = 0
    attributes: int = 0
    unique: int = 0
    duplicates: int = 0
    unique_by_provider: Counter[str] = field(default_factory=Counter)
    beyond_count: int = 0  # unique attributes that arrived after --count was reached (not written)
    last_error: str | None = None  # the reason of the last Error status a producer sent
    statuses: list[str] = field(default_factory=list)
    producers: set[str] = field(default_factory=set)
    stopped_producers: set[str] = field(default_factory=set)
    bad_frames: int = 0

    @property
    def rate(self) -> float:
        return self.unique / max(1e-9, time.monotonic() - self.started)

    def shares(self, separator: str = ", ") -> str:
        """Each provider's share of the unique attributes, largest first."""
        return separator.join(f"{p} {n / self.unique:.0%}" for p, n in self.unique_by_provider.most_common())

    def line(self) -> str:
        shares = self.shares() or "-"
        beyond = f" (+{self.beyond_count} beyond the count, not written)" if self.beyond_count else ""
        return (
            f"{self.unique} unique{beyond} ({self.rate:.1f}/s), {self.duplicates} duplicates, "
            f"{self.batches} batches; share: {shares}"
        )


class ReferenceOrchestrator:
    def __init__(
        self, options: OrchestratorOptions, *, on_progress: Callable[[Progress], None] | None = None
    ) -> None:
        self.options = options
        self.progress = Progress()
        self.seen: set[str] = set()
        self.bloom = BloomFilter.with_capacity(options.bloom_capacity, options.bloom_error_rate)
        self.done = asyncio.Event()  # count or duration reached: Stop sent
        self.finished = asyncio.Event()  # every producer reported Stopped (or grace over)
        self.writers: set[asyncio.StreamWriter] = set()
        self.go = asyncio.Event()  # StartTopic waits for it (``producer run``: every worker registered)
        self.go.set()
        self.handlers: set[asyncio.Task[Any]] = set()
        self.on_progress = on_progress
        self._output: IO[str] | None = None
        self._batch_log: IO[str] | None = None
        self.server: asyncio.Server | None = None

    def start_message(self) -> StartTopic:
        o = self.options
        return StartTopic(
            o.topic, o.prompt, dict(o.weights), GenerationConfig(o.temperature, o.max_tokens, o.batch_size)
        )

    # --- serving ----------------------------------------------------------------------
    async def serve(self, host: str, port: int) -> asyncio.Server:
        if self.options.output == STDOUT:
            self._output = sys.stdout
        elif self.options.output is not None:
            self._output = self.options.output.open("w", encoding="utf-8")
        if self.options.batch_log is not None:
            self._batch_log = self.options.batch_log.open("w", encoding="utf-8")
        self.server = await asyncio.start_server(self.on_connect, host, port)
        return self.server

    async def run(self, host: str, port: int) -> Progress:
        """Serve until the count or duration is reached and the producers stopped."""
        server = await self.serve(host, port)
        deadline = self.options.duration_s
        try:
            async with server:
                timers: list[asyncio.Task[Any]] = [asyncio.create_task(self.done.wait())]
                if deadline is not None:
                    timers.append(asyncio.create_task(asyncio.sleep(deadline)))
                await asyncio.wait(timers, return_when=asyncio.FIRST_COMPLETED)
                for t in timers:
                    t.cancel()
                await self.stop_all()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.finished.wait(), timeout=self.options.stop_grace_s)
        finally:
            self.close()
        return self.progress

    def close(self) -> None:
        for handle in (self._output, self._batch_log):
            if handle is not None and handle is not sys.stdout:
                handle.close()
        self._output = self._batch_log = None
        for writer in list(self.writers):
            writer.close()

    async def stop_all(self) -> None:
        self.done.set()
        if not self.writers or self.progress.producers <= self.progress.stopped_producers:
            self.finished.set()
        for writer in list(self.writers):
            with contextlib.suppress(OSError, ConnectionError):
                writer.write(frame(codec.encode(Stop())))
                await writer.drain()

    async def aclose(self) -> None:
        """Close the server and every connection, and wait for their handlers."""
        if self.server is not None:
            self.server.close()
        for task in list(self.handlers):
            task.cancel()
        await asyncio.gather(*self.handlers, return_exceptions=True)
        self.close()
        if self.server is not None:
            await self.server.wait_closed()

    async def on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.handlers.add(task)
            task.add_done_callback(self.handlers.discard)
        peer = writer.get_extra_info("peername")
        log.info("producer connected from %s", peer)
        self.writers.add(writer)
        bloom_task: asyncio.Task[None] | None = None
        try:
            await self.go.wait()
            writer.write(frame(codec.encode(Stop() if self.done.is_set() else self.start_message())))
            await writer.drain()
            if self.options.bloom_interval_s:
                bloom_task = asyncio.create_task(self.send_bloom(writer))
            while True:
                payload = await read_frame(reader, max_frame_bytes=DEFAULT_MAX_FRAME_BYTES)
                try:
                    message = codec.decode(payload)
                except ProtocolError as exc:
                    self.progress.bad_frames += 1
                    log.error("malformed frame from %s: %s", peer, exc)
                    continue
                if isinstance(message, AttributeBatch):
                    await self.accept(message, writer)
                elif isinstance(message, ProducerStatus):
                    self.on_status(message)
        except (BridgeError, ConnectionError, OSError) as exc:
            log.info("producer %s disconnected: %s", peer, exc)
        except asyncio.CancelledError:
            log.debug("connection handler of %s cancelled", peer)
        finally:
            if bloom_task is not None:
                bloom_task.cancel()
            self.writers.discard(writer)
            writer.close()
            if self.done.is_set() and not self.writers:  # nobody left to wait for
                self.finished.set()

    def on_status(self, message: ProducerStatus) -> None:
        status = message.status
        if isinstance(status, ErrorStatus):
            text = f"Error({status.reason})"
            self.progress.last_error = status.reason
        else:
            text = status.value
        self.progress.statuses.append(text)
        self.progress.producers.add(message.producer_id)
        # after Stop, a producer that never ran a topic (rejected it) stays Idle: nothing to wait for
        if status in (ProducerState.STOPPED, ProducerState.IDLE) and self.done.is_set():
            self.progress.stopped_producers.add(message.producer_id)
            if self.progress.producers <= self.progress.stopped_producers:
                self.finished.set()
        log.info("producer %s: %s", message.producer_id, text)

    async def accept(self, batch: AttributeBatch, writer: asyncio.StreamWriter) -> None:
        progress = self.progress
        progress.batches += 1
        progress.producers.add(batch.producer_id)
        now = time.time()
        if self._batch_log is not None:
            self._batch_log.write(
                json.dumps(
                    {
                        "producer_id": batch.producer_id,
                        "provider": batch.provider_used,
                        "attributes": list(batch.attributes),
                        "time": now,
                    }
                )
                + "\n"
            )
            self._batch_log.flush()
        for attribute in batch.attributes:
            progress.attributes += 1
            key = normalize(attribute)
            if key in self.seen:
                progress.duplicates += 1
                continue
            self.seen.add(key)
            self.bloom.add(attribute)
            if self.options.count is not None and progress.unique >= self.options.count:
                progress.beyond_count += 1  # in flight when the count was reached: counted, not written
                continue
            progress.unique += 1
            progress.unique_by_provider[batch.provider_used] += 1
            if self._output is not None:
                self._output.write(
                    json.dumps(
                        {
                            "text": attribute,
                            "provider": batch.provider_used,
                            "producer_id": batch.producer_id,
                            "time": now,
                        },
                        ensure_ascii=False,
                    )
                    + "\n"
                )
        if self._output is not None:
            self._output.flush()
        if self.on_progress is not None:
            self.on_progress(progress)
        count = self.options.count
        if count is not None and progress.unique >= count and not self.done.is_set():
            log.info("reached %d unique attributes: sending Stop", count)
            await self.stop_all()

    async def send_bloom(self, writer: asyncio.StreamWriter) -> None:
        interval = self.options.bloom_interval_s or 5.0
        while True:
            await asyncio.sleep(interval)
            payload = filter_to_wire(self.bloom).encode()
            writer.write(frame(codec.encode(UpdateConfiguration(bloom_filter=payload))))
            await writer.drain()
            log.info("sent a bloom filter of %d items (%d bytes)", self.bloom.items, len(payload))


if __name__ == "__main__":  # python -m orchestrator_bridge.orchestrator = producer orchestrator
    sys.exit(importlib.import_module("orchestrator_bridge.cli.main").main(["orchestrator", *sys.argv[1:]]))
