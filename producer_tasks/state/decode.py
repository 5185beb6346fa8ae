"""Records decoded from the state hashes' fields (what the Lua scripts write beside them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from producer_tasks.records import HealthRecord, Phase, ProviderStats, ProviderStatus, TopicState

LATENCY_PREFIX = "latency_le_"  # the outcome script's histogram fields (successful calls)
FAILED_LATENCY_PREFIX = "failed_latency_le_"  # and failed calls
FLOAT_STATS = frozenset({"total_response_ms", "failed_response_ms", "ema_success", "ema_novelty", "cost_usd"})


def parse_state(data: str | None, phase: str | None, epoch: str | None) -> TopicState:
    """The state hash's fields: the JSON record, phase and epoch beside it (for the Lua scripts)."""
    if not data:
        return TopicState()
    state = TopicState.model_validate_json(data)
    return state.model_copy(update={"phase": Phase(phase or state.phase), "epoch": int(epoch or state.epoch)})


def phase_of(phase: str | None, data_length: int) -> Phase | None:
    """The phase from the state hash's ``phase`` field and its topic's length: Idle without
    a topic; None when only the topic record has it (read the state then)."""
    if not data_length:
        return Phase.IDLE
    return Phase(phase) if phase else None


@dataclass(frozen=True, slots=True)
class Spend:
    """What this producer id spent (US$), and when and at which budget it stopped."""

    usd: float = 0.0
    reached_ms: int | None = None
    budget_usd: float | None = None


def parse_spend(raw: dict[str, str]) -> Spend:
    return Spend(
        usd=float(raw.get("usd", 0.0)),
        reached_ms=int(raw["reached_ms"]) if raw.get("reached_ms") else None,
        budget_usd=float(raw["budget"]) if raw.get("budget") else None,
    )


def parse_health(raw: dict[str, str]) -> HealthRecord:
    if not raw:
        return HealthRecord()
    return HealthRecord(
        consecutive_failures=int(raw.get("consecutive_failures", 0)),
        last_success_ms=int(raw["last_success_ms"]) if raw.get("last_success_ms") else None,
        last_failure_ms=int(raw["last_failure_ms"]) if raw.get("last_failure_ms") else None,
        successes=int(raw.get("successes", 0)),
        total_response_ms=float(raw.get("total_response_ms", 0.0)),
        status=ProviderStatus(raw.get("status", ProviderStatus.UNKNOWN.value)),
        cooldown_until_ms=int(float(raw.get("cooldown_until_ms", 0))),
        last_error=raw.get("last_error", ""),
    )


def parse_stats(raw: dict[str, str]) -> ProviderStats:
    fields = ProviderStats.model_fields
    values: dict[str, Any] = {}
    buckets: dict[str, int] = {}
    failed: dict[str, int] = {}
    for name, value in raw.items():
        if name.startswith(LATENCY_PREFIX):
            buckets[name.removeprefix(LATENCY_PREFIX)] = int(value)
        elif name.startswith(FAILED_LATENCY_PREFIX):
            failed[name.removeprefix(FAILED_LATENCY_PREFIX)] = int(value)
        elif name in fields:
            is_float = name in FLOAT_STATS
            values[name] = float(value) if is_float else int(float(value))
    return ProviderStats(**values, latency_buckets=buckets, failed_latency_buckets=failed)
