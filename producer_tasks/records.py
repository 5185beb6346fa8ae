"""Typed records that cross boundaries (provider -> cycle -> Redis -> bridge)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class ProviderStatus(StrEnum):
    """A provider's fleet-wide health (the bridge maps it onto the wire's enum by value)."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"
    UNKNOWN = "unknown"


class Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LLMResponse(Record):
    """One provider answer."""

    content: str
    prompt_tokens: int = Field(ge=0)
    completion_tokens: int = Field(ge=0)
    model: str
    response_time_ms: float = Field(ge=0)

    @property
    def tokens_used(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class HealthRecord(Record):
    """Fleet-wide health of one provider (kept in Redis; the wire's ProviderHealth)."""

    consecutive_failures: int = 0
    last_success_ms: int | None = None
    last_failure_ms: int | None = None
    successes: int = 0
    total_response_ms: float = 0.0
    status: ProviderStatus = ProviderStatus.UNKNOWN
    cooldown_until_ms: int = 0
    last_error: str = ""

    @property
    def average_response_ms(self) -> float:
        return self.total_response_ms / self.successes if self.successes else 0.0


class ProviderStats(Record):
    """Fleet-wide counters of one provider."""

    total_requests: int = 0
    successful_requests: int = 0
    failed_requests: int = 0
    total_response_ms: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0  # at the provider's prices when each call was made
    candidates: int = 0
    unique_contributions: int = 0
    last_used_ms: int | None = None
    ema_success: float = 1.0  # moving average of successful calls
    ema_novelty: float = 1.0  # moving average of unique / candidates per batch
    latency_buckets: dict[str, int] = Field(default_factory=dict)  # le (ms or "inf") -> successful calls
    failed_response_ms: float = 0.0
    failed_latency_buckets: dict[str, int] = Field(default_factory=dict)  # the same, failed calls

    @property
    def tokens_used(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def mean_response_ms(self) -> float:
        return self.total_response_ms / self.successful_requests if self.successful_requests else 0.0


class GenerationAttempt(Record):
    """One generation cycle, kept in a bounded history."""

    timestamp_ms: int
    provider_used: str
    prompt_sent: str
    raw_response: str
    parsed_candidates: list[str]
    response_time_ms: float
    tokens_used: int
    success: bool
    error: str = ""


class BatchRecord(Record):
    """A batch waiting in the Redis stream for the bridge."""

    epoch: int
    topic: str
    attributes: list[str]
    provider_used: str
    metadata: MetadataRecord
    bloom: BloomCounts | None = None


class MetadataRecord(Record):
    response_time_ms: int
    prompt_tokens: int
    completion_tokens: int
    provider_status: ProviderStatus


class BloomCounts(Record):
    """Fleet-wide bloom statistics at the time a batch was filtered."""

    total_candidates: int
    filtered_candidates: int
    last_filter_update_ms: int


BatchRecord.model_rebuild()


class Phase(StrEnum):
    """Where the fleet is for its current topic."""

    IDLE = "idle"  # no topic yet
    RUNNING = "running"
    STOPPING = "stopping"  # Stop received; cycles in flight finish
    STOPPED = "stopped"


class LaneStatus(StrEnum):
    QUEUED = "queued"  # message sent to a provider queue
    RESERVED = "reserved"  # no longer set (the claim takes a QUEUED lane); kept for older workers' lanes
    RUNNING = "running"  # the cycle is allowed to spend tokens
    WAITING = "waiting"  # paused (backlog, no provider, rate limit, backoff) until until_ms


class GenerationSettings(Record):
    """The orchestrator's GenerationConfig, validated."""

    temperature: float
    max_tokens: int
    batch_size: int


class TopicState(Record):
    """The fleet's topic, prompt, weights and generation settings (one per producer)."""

    topic: str = ""
    prompt: str = ""
    weights: dict[str, float] = Field(default_factory=dict)
    generation: GenerationSettings = GenerationSettings(temperature=0.7, max_tokens=1024, batch_size=20)
    epoch: int = 0
    phase: Phase = Phase.IDLE
    concurrency: int = 8
    max_backlog: int = 1000
    updated_ms: int = 0


class LaneRecord(Record):
    """One of the fleet's ``concurrency`` generation lanes."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    token: str
    provider: str
    status: LaneStatus
    worker: str = ""
    since_ms: int = 0
    until_ms: int = 0
    reason: str = ""
    failures: int = 0
