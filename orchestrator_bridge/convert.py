"""Fleet records <-> wire messages: the one place where the two vocabularies meet.

The fleet (``producer_tasks``) knows nothing of the wire; the protocol knows nothing of
the fleet. The bridge and the reference orchestrator convert here.
"""

from __future__ import annotations

from orchestrator_bridge.protocol.bloomwire import WIRE_VERSION, BloomFilterWire
from orchestrator_bridge.protocol.messages import (
    AttributeBatch,
    BloomFilterStats,
    Duration,
    GenerationMetadata,
    ProducerState,
    ProviderHealth,
    ProviderStatus,
    Timestamp,
)
from producer_tasks.bloomhash import BloomFilter
from producer_tasks.records import BatchRecord, HealthRecord, MetadataRecord, Phase
from producer_tasks.state.bloom import LoadedFilter

U32_MAX = 0xFFFF_FFFF
PHASE_STATUS = {
    Phase.IDLE: ProducerState.IDLE,
    Phase.RUNNING: ProducerState.RUNNING,
    Phase.STOPPING: ProducerState.STOPPING,
    Phase.STOPPED: ProducerState.STOPPED,
}


def _timestamp(unix_ms: int | None) -> Timestamp | None:
    return None if unix_ms is None else Timestamp.from_unix_ms(unix_ms)


def health_to_wire(health: HealthRecord) -> ProviderHealth:
    return ProviderHealth(
        consecutive_failures=min(health.consecutive_failures, U32_MAX),
        last_success=_timestamp(health.last_success_ms),
        last_failure=_timestamp(health.last_failure_ms),
        average_response_time=Duration.from_ms(health.average_response_ms),
        current_status=ProviderStatus(health.status.value),
    )


def metadata_to_wire(metadata: MetadataRecord) -> GenerationMetadata:
    return GenerationMetadata(
        response_time_ms=metadata.response_time_ms,
        tokens_used=min(metadata.prompt_tokens + metadata.completion_tokens, U32_MAX),
        prompt_tokens=min(metadata.prompt_tokens, U32_MAX),
        completion_tokens=min(metadata.completion_tokens, U32_MAX),
        provider_status=ProviderStatus(metadata.provider_status.value),
    )


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
        generation_metadata=metadata_to_wire(batch.metadata),
        bloom_stats=stats,
    )


def filter_to_load(wire: BloomFilterWire) -> LoadedFilter:
    return LoadedFilter(num_bits=wire.num_bits, num_hashes=wire.num_hashes, items=wire.items, bits=wire.bits)


def filter_to_wire(bloom: BloomFilter) -> BloomFilterWire:
    return BloomFilterWire(WIRE_VERSION, bloom.num_bits, bloom.num_hashes, bloom.items, bytes(bloom.bits))


def filter_from_wire(wire: BloomFilterWire) -> BloomFilter:
    return BloomFilter(wire.num_bits, wire.num_hashes, items=wire.items, bits=wire.bits)
