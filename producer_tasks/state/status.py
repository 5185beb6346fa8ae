"""The fleet as Redis sees it: one typed snapshot (``producer status``, ``/metrics``),
and the bridge's own status hash."""

from __future__ import annotations

from collections import Counter
from typing import Any

from pydantic import BaseModel, ConfigDict

from producer_tasks import autoscaling
from producer_tasks.clock import now_ms
from producer_tasks.generation import strategy
from producer_tasks.printable import printable
from producer_tasks.records import LaneStatus
from producer_tasks.state import bloom, novelty
from producer_tasks.state.client import translated
from producer_tasks.state.fleet import Fleet, FleetView


class StrategyYield(BaseModel):
    """What one prompt strategy brought on one provider for the current topic."""

    model_config = ConfigDict(frozen=True)

    per_1000_tokens: float  # what it would bring now: relative × the provider's recent yield
    relative: float  # against the provider's recent yield (what the choice compares)
    tried: int  # cycles that ran it


class ProviderView(BaseModel):
    model_config = ConfigDict(frozen=True)

    status: str
    weight: float
    served_by_workers: int
    consecutive_failures: int
    cooldown_s: float
    last_error: str
    requests: int
    failures: int
    tokens: int
    unique_contributions: int
    mean_latency_ms: float
    novelty: float
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    total_response_ms: float = 0.0
    latency_buckets: dict[str, int] = {}
    failed_response_ms: float = 0.0
    failed_latency_buckets: dict[str, int] = {}
    demand_slots: int = 0  # autoscaling: worker slots wanted for this provider now
    slots: int = 0  # slots of the live workers serving it
    lanes_waiting_for_slot: int = 0
    strategy: str = ""  # the prompt strategy winning on this provider ("" before any cycle)
    strategies: dict[str, StrategyYield] = {}


class FleetStatus(BaseModel):
    model_config = ConfigDict(frozen=True)

    producer_id: str
    topic: str
    phase: str
    epoch: int
    concurrency: int
    cycles_in_flight: int
    lanes: dict[str, int]
    waiting_reasons: list[str]
    backlog: int
    max_backlog: int
    workers: list[str]
    providers: dict[str, ProviderView]
    bloom: dict[str, Any] | None
    bridge: dict[str, str]
    counters: dict[str, int]
    spent_usd: float = 0.0  # every call of this producer id so far, at the providers' prices
    budget_usd: float | None = None  # PRODUCER_BUDGET_USD
    budget_reached: bool = False
    unique_per_usd: float | None = None  # attributes appended per dollar spent


def strategy_yields(record: dict[str, str], provider: str) -> tuple[str, dict[str, StrategyYield]]:
    """The prompt strategy winning on ``provider`` ("" before any cycle) and what each
    brought, from the topic's record (``novelty.read_strategies``)."""
    arms = strategy.arms(record, provider)
    recent = strategy.recent_yield(record, provider)
    yields = {
        name.value: StrategyYield(
            per_1000_tokens=round(arm.relative * recent, 2), relative=round(arm.relative, 3), tried=arm.tried
        )
        for name, arm in arms.items()
    }
    return str(strategy.winning(arms) or ""), yields


def _provider_views(
    fleet: Fleet, view: FleetView, wanted: dict[str, autoscaling.ProviderDemand]
) -> dict[str, ProviderView]:
    """Each provider in use (a weight, requests made or workers serving it), as shown; the
    view read the strategies' record (``snapshot``)."""
    now = now_ms()
    providers: dict[str, ProviderView] = {}
    record = dict(view.extra[0] or {})
    for p in fleet.providers:
        health, stats, serving = view.health[p], view.stats[p], view.serving[p]
        weight = view.state.weights.get(p, 0.0)
        if not (weight or stats.total_requests or serving):
            continue
        need = wanted[p]
        winning, yields = strategy_yields(record, p)
        providers[p] = ProviderView(
            status=health.status.value,
            weight=weight,
            served_by_workers=serving,
            consecutive_failures=health.consecutive_failures,
            cooldown_s=max(0.0, (health.cooldown_until_ms - now) / 1000),
            last_error=printable(health.last_error),  # what Redis holds, whoever wrote it
            requests=stats.total_requests,
            failures=stats.failed_requests,
            tokens=stats.tokens_used,
            unique_contributions=stats.unique_contributions,
            mean_latency_ms=round(stats.mean_response_ms, 1),
            novelty=round(stats.ema_novelty, 3),
            prompt_tokens=stats.prompt_tokens,
            completion_tokens=stats.completion_tokens,
            cost_usd=round(stats.cost_usd, 6),
            total_response_ms=stats.total_response_ms,
            latency_buckets=stats.latency_buckets,
            failed_response_ms=stats.failed_response_ms,
            failed_latency_buckets=stats.failed_latency_buckets,
            demand_slots=need.demand_slots,
            slots=need.slots,
            lanes_waiting_for_slot=need.lanes_waiting_for_slot,
            strategy=winning,
            strategies=yields,
        )
    return providers


def _bloom_view(fleet: Fleet) -> dict[str, Any] | None:
    shape, counts = bloom.read_shape(fleet), bloom.read_counts(fleet)
    if shape is None or counts is None:
        return None
    return {
        "num_bits": shape.num_bits,
        "num_hashes": shape.num_hashes,
        "total_candidates": counts.total_candidates,
        "filtered_candidates": counts.filtered_candidates,
        "last_filter_update_ms": counts.last_filter_update_ms,
    }


def snapshot(fleet: Fleet) -> FleetStatus:
    view = fleet.view(with_stats=True, extra=[novelty.strategies_call(fleet)])  # the strategies in its trip
    providers = _provider_views(fleet, view, autoscaling.demand(view, fleet.serving_slots()))
    bridge_info = read_bridge_status(fleet)
    lane_counts = Counter(lane.status.value for lane in view.lanes.values())
    reasons = sorted(
        {lane.reason for lane in view.lanes.values() if lane.status is LaneStatus.WAITING and lane.reason}
    )
    bloom_view = _bloom_view(fleet)
    spend = fleet.read_spend()
    counters = fleet.read_counters()
    attributes = counters.get("attributes_appended", 0)
    return FleetStatus(
        producer_id=fleet.producer_id,
        topic=view.state.topic,
        phase=view.state.phase.value,
        epoch=view.state.epoch,
        concurrency=view.state.concurrency,
        cycles_in_flight=lane_counts.get("running", 0) + lane_counts.get("reserved", 0),
        lanes=dict(lane_counts),
        waiting_reasons=reasons,
        backlog=view.backlog,
        max_backlog=view.state.max_backlog,
        workers=sorted(fleet.live_workers()),
        providers=providers,
        bloom=bloom_view,
        bridge=bridge_info,
        counters=counters,
        spent_usd=round(spend.usd, 6),
        budget_usd=spend.budget_usd if spend.reached_ms is not None else fleet.budget_usd,
        budget_reached=spend.reached_ms is not None,
        unique_per_usd=round(attributes / spend.usd, 1) if spend.usd > 0 else None,
    )


@translated("write bridge status")
def write_bridge_status(fleet: Fleet, fields: dict[str, str | int]) -> None:
    """The bridge's own status (connected, frames sent, last error) for status and metrics."""
    fleet.redis.hset(fleet.keys.bridge, mapping=fields)


@translated("read bridge status")
def read_bridge_status(fleet: Fleet) -> dict[str, str]:
    return dict(fleet.redis.hgetall(fleet.keys.bridge))
