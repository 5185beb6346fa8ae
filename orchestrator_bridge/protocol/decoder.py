"""Strict bincode 1.x decoding of ProducerMessage (``decode``).

Unknown variants, truncation, trailing bytes, invalid UTF-8, bad bool/option tags and
lengths larger than the bytes left all raise :class:`DecodeError`, never a foreign error.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import TypeVar

from orchestrator_bridge.protocol.errors import DecodeError
from orchestrator_bridge.protocol.limits import (
    MAX_MAP_ENTRIES,
    MAX_NAME_BYTES,
    MAX_PROMPT_BYTES,
    MAX_TOPIC_BYTES,
)
from orchestrator_bridge.protocol.messages import (
    CONTROL_TYPES,
    MESSAGE_TYPES,
    AttributeBatch,
    BloomFilterStats,
    ControlMessage,
    Duration,
    ErrorStatus,
    GenerationConfig,
    GenerationMetadata,
    ProducerMessage,
    ProducerState,
    ProducerStatus,
    ProducerStatusType,
    ProviderHealth,
    ProviderStatus,
    StartTopic,
    Stop,
    Timestamp,
    UpdateConfiguration,
)

T = TypeVar("T")

# bincode primitives (little-endian, default options); kept local as in encoder.py.
U32 = struct.Struct("<I")
U64 = struct.Struct("<Q")
F32 = struct.Struct("<f")
F64 = struct.Struct("<d")
META = struct.Struct("<QIIII")  # GenerationMetadata: 4 numbers + status index
STATS = struct.Struct("<QQdQ")  # BloomFilterStats
PROVIDER_STATUSES = tuple(ProviderStatus)
PRODUCER_STATES = tuple(ProducerState)
ERROR_STATUS_INDEX = len(PRODUCER_STATES)
U64_MAX = 0xFFFF_FFFF_FFFF_FFFF
NANOS = 1_000_000_000


# --- decoding -------------------------------------------------------------------------


class _Reader:
    __slots__ = ("buf", "end", "pos")

    def __init__(self, payload: bytes) -> None:
        self.buf = payload
        self.pos = 0
        self.end = len(payload)

    def _need(self, n: int, what: str) -> int:
        pos = self.pos
        if n > self.end - pos:
            raise DecodeError(
                f"truncated payload: {what} needs {n} bytes at offset {pos}, {self.end - pos} left"
            )
        self.pos = pos + n
        return pos

    def u8(self, what: str) -> int:
        return self.buf[self._need(1, what)]

    def u32(self, what: str) -> int:
        return int(U32.unpack_from(self.buf, self._need(4, what))[0])

    def u64(self, what: str) -> int:
        return int(U64.unpack_from(self.buf, self._need(8, what))[0])

    def f32(self, what: str) -> float:
        return float(F32.unpack_from(self.buf, self._need(4, what))[0])

    def f64(self, what: str) -> float:
        return float(F64.unpack_from(self.buf, self._need(8, what))[0])

    def boolean(self, what: str) -> bool:
        tag = self.u8(what)
        if tag > 1:
            raise DecodeError(f"invalid bool {tag} for {what} at offset {self.pos - 1}")
        return tag == 1

    def option(self, what: str) -> bool:
        tag = self.u8(what)
        if tag > 1:
            raise DecodeError(f"invalid Option tag {tag} for {what} at offset {self.pos - 1}")
        return tag == 1

    def length(self, what: str, *, item_size: int = 1, limit: int | None = None) -> int:
        n = self.u64(what)
        if limit is not None and n > limit:
            unit = "bytes" if item_size == 1 else "entries"
            raise DecodeError(f"{what} has {n} {unit}, more than the {limit} allowed")
        if n * item_size > self.end - self.pos:
            raise DecodeError(
                f"length {n} of {what} at offset {self.pos - 8} is larger than the "
                f"{self.end - self.pos} bytes left"
            )
        return n

    def string(self, what: str, limit: int | None = None) -> str:
        n = self.length(what, limit=limit)
        start = self._need(n, what)
        try:
            return self.buf[start : start + n].decode()
        except UnicodeDecodeError as exc:
            raise DecodeError(f"invalid UTF-8 in {what} at offset {start}: {exc.reason}") from exc

    def raw_bytes(self, what: str) -> bytes:
        n = self.length(what)
        start = self._need(n, what)
        return bytes(self.buf[start : start + n])

    def map(self, what: str, value: Callable[[], T], *, min_item_size: int) -> dict[str, T]:
        n = self.length(what, item_size=min_item_size, limit=MAX_MAP_ENTRIES)
        result: dict[str, T] = {}
        for _ in range(n):
            start = self.pos
            key = self.string(f"{what} key", MAX_NAME_BYTES)
            if key in result:  # not quoted: the offset says where
                raise DecodeError(f"duplicate key in {what} at offset {start}")
            result[key] = value()
        return result

    def time(self, what: str) -> tuple[int, int]:
        secs = self.u64(what)
        nanos = self.u32(what)
        if nanos >= NANOS:  # serde normalises like Duration::new
            secs += nanos // NANOS
            nanos %= NANOS
            if secs > U64_MAX:
                raise DecodeError(f"{what} overflows: seconds above u64")
        return secs, nanos

    def provider_status(self, what: str) -> ProviderStatus:
        index = self.u32(what)
        if index >= len(PROVIDER_STATUSES):
            raise DecodeError(f"unknown ProviderStatus variant {index} in {what}")
        return PROVIDER_STATUSES[index]


def _decode_config(r: _Reader) -> GenerationConfig:
    return GenerationConfig(
        temperature=r.f32("temperature"),
        max_tokens=r.u32("max_tokens"),
        batch_size=r.u32("batch_size"),
    )


def _decode_health(r: _Reader) -> ProviderHealth:
    failures = r.u32("consecutive_failures")
    last_success = Timestamp(*r.time("last_success")) if r.option("last_success") else None
    last_failure = Timestamp(*r.time("last_failure")) if r.option("last_failure") else None
    return ProviderHealth(
        consecutive_failures=failures,
        last_success=last_success,
        last_failure=last_failure,
        average_response_time=Duration(*r.time("average_response_time")),
        current_status=r.provider_status("current_status"),
    )


def _decode_status(r: _Reader) -> ProducerStatusType:
    index = r.u32("ProducerStatusType")
    if index < len(PRODUCER_STATES):
        return PRODUCER_STATES[index]
    if index == ERROR_STATUS_INDEX:
        return ErrorStatus(r.string("Error reason"))
    raise DecodeError(f"unknown ProducerStatusType variant {index}")


def _decode_attribute_batch(r: _Reader) -> AttributeBatch:
    """The hot path (one per batch): straight-line, local variables, a call per name only."""
    buf, pos, end = r.buf, r.pos, r.end
    unpack_u64 = U64.unpack_from
    try:
        producer_id, pos = _batch_name(buf, pos, end, "producer_id")
        (count,) = unpack_u64(buf, pos)
        pos += 8
        if count * 8 > end - pos:
            raise DecodeError(
                f"length {count} of attributes at offset {pos - 8} is larger than the {end - pos} bytes left"
            )
        attributes: list[str] = []
        append = attributes.append
        for _ in range(count):
            (size,) = unpack_u64(buf, pos)
            pos += 8
            stop = pos + size
            if stop > end:
                raise DecodeError(
                    f"length {size} of an attribute at offset {pos - 8} is larger than "
                    f"the {end - pos} bytes left"
                )
            append(buf[pos:stop].decode())
            pos = stop
        provider_used, pos = _batch_name(buf, pos, end, "provider_used")
        metadata, stats, pos = _batch_tail(buf, pos)
    except (struct.error, IndexError) as exc:
        raise DecodeError(f"truncated payload: AttributeBatch ends at offset {pos} of {end}") from exc
    except UnicodeDecodeError as exc:
        raise DecodeError(f"invalid UTF-8 in AttributeBatch near offset {pos}: {exc.reason}") from exc
    r.pos = pos
    return AttributeBatch(producer_id, tuple(attributes), provider_used, metadata, stats)


def _batch_name(buf: bytes, pos: int, end: int, what: str) -> tuple[str, int]:
    """One of an AttributeBatch's names, within MAX_NAME_BYTES, and the offset after it."""
    (size,) = U64.unpack_from(buf, pos)
    pos += 8
    if size > MAX_NAME_BYTES:
        raise DecodeError(f"{what} has {size} bytes, more than the {MAX_NAME_BYTES} allowed")
    if pos + size > end:
        raise DecodeError(
            f"length {size} of {what} at offset {pos - 8} is larger than the {end - pos} bytes left"
        )
    return buf[pos : pos + size].decode(), pos + size


def _batch_tail(buf: bytes, pos: int) -> tuple[GenerationMetadata, BloomFilterStats | None, int]:
    """An AttributeBatch's fixed-size end: its metadata and optional bloom statistics."""
    elapsed, tokens, prompt_tokens, completion_tokens, status_index = META.unpack_from(buf, pos)
    pos += META.size
    if status_index >= len(PROVIDER_STATUSES):
        raise DecodeError(f"unknown ProviderStatus variant {status_index} in provider_status")
    metadata = GenerationMetadata(
        elapsed, tokens, prompt_tokens, completion_tokens, PROVIDER_STATUSES[status_index]
    )
    tag = buf[pos]
    pos += 1
    if tag == 0:
        return metadata, None, pos
    if tag != 1:
        raise DecodeError(f"invalid Option tag {tag} for bloom_stats at offset {pos - 1}")
    return metadata, BloomFilterStats(*STATS.unpack_from(buf, pos)), pos + STATS.size


def _decode_body(r: _Reader, variant: int) -> ProducerMessage:
    if variant == 3:
        return _decode_attribute_batch(r)
    if variant == 0:
        return StartTopic(
            topic=r.string("topic", MAX_TOPIC_BYTES),
            prompt=r.string("prompt", MAX_PROMPT_BYTES),
            provider_weights=r.map("provider_weights", lambda: r.f32("weight"), min_item_size=12),
            generation_config=_decode_config(r),
        )
    if variant == 1:
        prompt = r.string("prompt", MAX_PROMPT_BYTES) if r.option("prompt") else None
        weights = (
            r.map("provider_weights", lambda: r.f32("weight"), min_item_size=12)
            if r.option("provider_weights")
            else None
        )
        bloom = r.raw_bytes("bloom_filter") if r.option("bloom_filter") else None
        return UpdateConfiguration(prompt, weights, bloom)
    if variant == 2:
        return Stop()
    if variant == 4:
        producer_id = r.string("producer_id", MAX_NAME_BYTES)
        status = _decode_status(r)
        health = r.map("provider_health", lambda: _decode_health(r), min_item_size=8 + 22)
        return ProducerStatus(producer_id, status, health)
    raise DecodeError(f"unknown ProducerMessage variant {variant} (known: 0..=4)")


def decode(payload: bytes | bytearray | memoryview) -> ProducerMessage:
    """Decode exactly one message from a payload; anything else raises DecodeError."""
    r = _Reader(bytes(payload))
    return _decode_whole(r, r.u32("ProducerMessage variant"))


def decode_control(payload: bytes | bytearray | memoryview) -> ControlMessage:
    """``decode`` for a payload sent to a producer: the variants only producers send
    (AttributeBatch, ProducerStatus) are refused from their index, never decoded."""
    r = _Reader(bytes(payload))
    variant = r.u32("ProducerMessage variant")
    sent_by_producers = variant < len(MESSAGE_TYPES) and MESSAGE_TYPES[variant] not in CONTROL_TYPES
    message = None if sent_by_producers else _decode_whole(r, variant)
    if not isinstance(message, CONTROL_TYPES):
        name = MESSAGE_TYPES[variant].__name__
        raise DecodeError(f"{name} is sent by producers, not to them ({r.end} bytes, not decoded)")
    return message


def _decode_whole(r: _Reader, variant: int) -> ProducerMessage:
    message = _decode_body(r, variant)
    if r.pos != r.end:
        raise DecodeError(
            f"{r.end - r.pos} trailing bytes after {type(message).__name__} (payload {r.end} bytes)"
        )
    return message
