"""bincode 1.x encoding of ProducerMessage, byte-exact with Rust serde (``encode``)."""

from __future__ import annotations

import struct
from collections.abc import Mapping

from orchestrator_bridge.protocol.errors import EncodeError
from orchestrator_bridge.protocol.messages import (
    AttributeBatch,
    Duration,
    ErrorStatus,
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

# bincode primitives (little-endian, default options). Defined here, not imported from a
# shared module: measured, importing them made encoding ~8% slower (docs/benchmarks.md).
U32 = struct.Struct("<I")
U64 = struct.Struct("<Q")
F32 = struct.Struct("<f")
META = struct.Struct("<QIIII")  # GenerationMetadata: 4 numbers + status index
STATS = struct.Struct("<QQdQ")  # BloomFilterStats
CONFIG = struct.Struct("<fII")  # GenerationConfig
TIME = struct.Struct("<QI")  # SystemTime / Duration
PROVIDER_STATUSES = tuple(ProviderStatus)
PROVIDER_STATUS_INDEX = {s: i for i, s in enumerate(PROVIDER_STATUSES)}
PRODUCER_STATES = tuple(ProducerState)
PRODUCER_STATE_INDEX = {s: i for i, s in enumerate(PRODUCER_STATES)}
ERROR_STATUS_INDEX = len(PRODUCER_STATES)


# --- encoding -------------------------------------------------------------------------


class _Writer:
    __slots__ = ("parts",)

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def u32(self, value: int) -> None:
        self.parts.append(U32.pack(value))

    def u64(self, value: int) -> None:
        self.parts.append(U64.pack(value))

    def string(self, value: str) -> None:
        data = value.encode()
        self.parts.append(U64.pack(len(data)))
        self.parts.append(data)

    def raw_bytes(self, value: bytes) -> None:
        self.parts.append(U64.pack(len(value)))
        self.parts.append(bytes(value))

    def f32_map(self, mapping: Mapping[str, float]) -> None:
        self.u64(len(mapping))
        for key, value in mapping.items():
            self.string(key)
            self.parts.append(F32.pack(value))

    def tag(self, present: bool) -> None:
        self.parts.append(b"\x01" if present else b"\x00")

    def time(self, value: Timestamp | Duration) -> None:
        self.parts.append(TIME.pack(value.secs, value.nanos))


def _encode_health(w: _Writer, health: ProviderHealth) -> None:
    w.u32(health.consecutive_failures)
    for moment in (health.last_success, health.last_failure):
        if moment is None:
            w.tag(False)
        else:
            w.tag(True)
            w.time(moment)
    w.time(health.average_response_time)
    w.u32(PROVIDER_STATUS_INDEX[health.current_status])


def _encode_status(w: _Writer, status: ProducerStatusType) -> None:
    if isinstance(status, ErrorStatus):
        w.u32(ERROR_STATUS_INDEX)
        w.string(status.reason)
    else:
        w.u32(PRODUCER_STATE_INDEX[status])


def _encode_batch(w: _Writer, message: AttributeBatch) -> None:
    parts = w.parts
    parts.append(b"\x03\x00\x00\x00")
    w.string(message.producer_id)
    parts.append(U64.pack(len(message.attributes)))
    for attribute in message.attributes:
        data = attribute.encode()
        parts.append(U64.pack(len(data)))
        parts.append(data)
    w.string(message.provider_used)
    meta = message.generation_metadata
    parts.append(
        META.pack(
            meta.response_time_ms,
            meta.tokens_used,
            meta.prompt_tokens,
            meta.completion_tokens,
            PROVIDER_STATUS_INDEX[meta.provider_status],
        )
    )
    stats = message.bloom_stats
    if stats is None:
        parts.append(b"\x00")
        return
    parts.append(b"\x01")
    parts.append(
        STATS.pack(
            stats.total_candidates,
            stats.filtered_candidates,
            stats.filter_effectiveness,
            stats.last_filter_update,
        )
    )


def _encode_update(w: _Writer, message: UpdateConfiguration) -> None:
    w.u32(1)
    w.tag(message.prompt is not None)
    if message.prompt is not None:
        w.string(message.prompt)
    w.tag(message.provider_weights is not None)
    if message.provider_weights is not None:
        w.f32_map(message.provider_weights)
    w.tag(message.bloom_filter is not None)
    if message.bloom_filter is not None:
        w.raw_bytes(message.bloom_filter)


def _encode_into(w: _Writer, message: ProducerMessage) -> None:
    if isinstance(message, AttributeBatch):
        _encode_batch(w, message)
    elif isinstance(message, StartTopic):
        w.u32(0)
        w.string(message.topic)
        w.string(message.prompt)
        w.f32_map(message.provider_weights)
        cfg = message.generation_config
        w.parts.append(CONFIG.pack(cfg.temperature, cfg.max_tokens, cfg.batch_size))
    elif isinstance(message, UpdateConfiguration):
        _encode_update(w, message)
    elif isinstance(message, Stop):
        w.u32(2)
    elif isinstance(message, ProducerStatus):
        w.u32(4)
        w.string(message.producer_id)
        _encode_status(w, message.status)
        w.u64(len(message.provider_health))
        for name, health in message.provider_health.items():
            w.string(name)
            _encode_health(w, health)
    else:
        raise EncodeError(f"not a ProducerMessage: {type(message).__name__}")


def encode(message: ProducerMessage) -> bytes:
    """bincode payload of one message (without the length prefix)."""
    w = _Writer()
    try:
        _encode_into(w, message)
    except (struct.error, OverflowError) as exc:
        raise EncodeError(f"cannot encode {type(message).__name__}: {exc}") from exc
    except UnicodeEncodeError as exc:
        raise EncodeError(f"cannot encode {type(message).__name__}: invalid text: {exc}") from exc
    return b"".join(w.parts)
