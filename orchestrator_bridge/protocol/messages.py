"""Typed records for every type of the wire protocol (docs/protocol.md).

Field order is wire order: the codec encodes fields in declaration order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

NANOS_PER_SECOND = 1_000_000_000


class ProviderStatus(StrEnum):
    """Rust ``ProviderStatus``; the wire index is the declaration order."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"
    UNKNOWN = "unknown"


class ProducerState(StrEnum):
    """The unit variants of Rust ``ProducerStatusType`` (indices 0..=4)."""

    STARTING = "starting"
    IDLE = "idle"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class ErrorStatus:
    """``ProducerStatusType::Error(String)`` (index 5)."""

    reason: str


ProducerStatusType = ProducerState | ErrorStatus


@dataclass(frozen=True, slots=True)
class Timestamp:
    """``std::time::SystemTime`` as seconds and nanoseconds since the Unix epoch."""

    secs: int
    nanos: int = 0

    @classmethod
    def from_unix_ms(cls, unix_ms: int) -> Timestamp:
        return cls(unix_ms // 1000, (unix_ms % 1000) * 1_000_000)

    @property
    def unix_ms(self) -> int:
        return self.secs * 1000 + self.nanos // 1_000_000


@dataclass(frozen=True, slots=True)
class Duration:
    """``std::time::Duration`` as seconds and nanoseconds."""

    secs: int
    nanos: int = 0

    @classmethod
    def from_ms(cls, ms: float) -> Duration:
        ns = max(0, round(ms * 1_000_000))
        return cls(ns // NANOS_PER_SECOND, ns % NANOS_PER_SECOND)

    @property
    def ms(self) -> float:
        return self.secs * 1000 + self.nanos / 1_000_000


@dataclass(frozen=True, slots=True)
class GenerationConfig:
    temperature: float  # f32
    max_tokens: int  # u32
    batch_size: int  # u32


@dataclass(frozen=True, slots=True)
class GenerationMetadata:
    response_time_ms: int  # u64
    tokens_used: int  # u32, prompt_tokens + completion_tokens
    prompt_tokens: int  # u32
    completion_tokens: int  # u32
    provider_status: ProviderStatus


@dataclass(frozen=True, slots=True)
class ProviderHealth:
    consecutive_failures: int  # u32
    last_success: Timestamp | None
    last_failure: Timestamp | None
    average_response_time: Duration
    current_status: ProviderStatus


@dataclass(frozen=True, slots=True)
class BloomFilterStats:
    total_candidates: int  # u64
    filtered_candidates: int  # u64
    filter_effectiveness: float  # f64, filtered / total, 0.0 when total == 0
    last_filter_update: int  # u64, unix epoch ms; 0 = never

    @classmethod
    def from_counts(
        cls, *, total_candidates: int, filtered_candidates: int, last_filter_update: int
    ) -> BloomFilterStats:
        effectiveness = filtered_candidates / total_candidates if total_candidates else 0.0
        return cls(total_candidates, filtered_candidates, effectiveness, last_filter_update)


# --- ProducerMessage variants (wire index = position in MESSAGE_TYPES) -------------------


@dataclass(frozen=True, slots=True)
class StartTopic:
    topic: str
    prompt: str
    provider_weights: dict[str, float]  # HashMap<String, f32>
    generation_config: GenerationConfig


@dataclass(frozen=True, slots=True)
class UpdateConfiguration:
    prompt: str | None = None
    provider_weights: dict[str, float] | None = None
    bloom_filter: bytes | None = None  # bincode of BloomFilterWire


@dataclass(frozen=True, slots=True)
class Stop:
    pass


@dataclass(frozen=True, slots=True)
class AttributeBatch:
    producer_id: str
    attributes: tuple[str, ...]
    provider_used: str
    generation_metadata: GenerationMetadata
    bloom_stats: BloomFilterStats | None = None


@dataclass(frozen=True, slots=True)
class ProducerStatus:
    producer_id: str
    status: ProducerStatusType
    provider_health: dict[str, ProviderHealth] = field(default_factory=dict)


ProducerMessage = StartTopic | UpdateConfiguration | Stop | AttributeBatch | ProducerStatus
ControlMessage = StartTopic | UpdateConfiguration | Stop  # what a producer receives
CONTROL_TYPES = (StartTopic, UpdateConfiguration, Stop)

MESSAGE_TYPES: tuple[type, ...] = (
    StartTopic,
    UpdateConfiguration,
    Stop,
    AttributeBatch,
    ProducerStatus,
)
