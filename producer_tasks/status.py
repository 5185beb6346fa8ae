"""The fleet as Redis sees it (``producer status``): one typed snapshot, as text or JSON."""

from __future__ import annotations

from collections import Counter
from typing import Any

from pydantic import BaseModel, ConfigDict

from producer_tasks import bloom
from producer_tasks.fleet import Fleet, now_ms, redis_errors
from producer_tasks.records import LaneStatus
from producer_tasks.settings import PROVIDERS


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


def snapshot(fleet: Fleet) -> FleetStatus:
    view = fleet.view(with_stats=True)
    now = now_ms()
    with redis_errors("read status"):
        queue_workers = {
            p: int(fleet.redis.zcount(fleet.keys.queue_workers(p), now - fleet.lease_ms, "+inf"))
            for p in PROVIDERS
        }
        bridge_info = fleet.redis.hgetall(fleet.keys.bridge)
    lane_counts = Counter(lane.status.value for lane in view.lanes.values())
    reasons = sorted(
        {lane.reason for lane in view.lanes.values() if lane.status is LaneStatus.WAITING and lane.reason}
    )
    providers: dict[str, ProviderView] = {}
    for p in PROVIDERS:
        health, stats = view.health[p], view.stats[p]
        weight = view.state.weights.get(p, 0.0)
        if not (weight or stats.total_requests or queue_workers[p]):
            continue
        providers[p] = ProviderView(
            status=health.status.value,
            weight=weight,
            served_by_workers=queue_workers[p],
            consecutive_failures=health.consecutive_failures,
            cooldown_s=max(0.0, (health.cooldown_until_ms - now) / 1000),
            last_error=health.last_error,
            requests=stats.total_requests,
            failures=stats.failed_requests,
            tokens=stats.tokens_used,
            unique_contributions=stats.unique_contributions,
            mean_latency_ms=round(stats.mean_response_ms, 1),
            novelty=round(stats.ema_novelty, 3),
        )
    shape, counts = bloom.read_shape(fleet), bloom.read_counts(fleet)
    bloom_view = None
    if shape is not None and counts is not None:
        bloom_view = {
            "num_bits": shape.num_bits,
            "num_hashes": shape.num_hashes,
            "total_candidates": counts.total_candidates,
            "filtered_candidates": counts.filtered_candidates,
            "last_filter_update_ms": counts.last_filter_update_ms,
        }
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
        counters=fleet.read_counters(),
    )


def render(status: FleetStatus) -> str:
    lines = [
        f"producer {status.producer_id}: {status.phase}"
        + (f", topic {status.topic!r} (epoch {status.epoch})" if status.topic else ", no topic yet"),
        f"cycles in flight {status.cycles_in_flight} of {status.concurrency}; lanes "
        + (", ".join(f"{k} {v}" for k, v in sorted(status.lanes.items())) or "none"),
        f"backlog {status.backlog} of {status.max_backlog}; batches appended "
        f"{status.counters.get('batches_appended', 0)}, "
        f"attributes {status.counters.get('attributes_appended', 0)}",
        f"workers ({len(status.workers)}): {', '.join(status.workers) or 'none alive'}",
    ]
    lines += [f"waiting: {reason}" for reason in status.waiting_reasons]
    if status.bridge:
        b = status.bridge
        state = "connected" if b.get("connected") == "1" else "disconnected"
        lines.append(
            f"bridge: {state} to {b.get('orchestrator', '?')}; {b.get('batches_forwarded', 0)} batches "
            f"forwarded, {b.get('bad_frames', 0)} bad frames"
            + (f"; last error: {b['last_error']}" if b.get("last_error") else "")
        )
    if status.bloom:
        f = status.bloom
        lines.append(
            f"bloom filter: {f['num_bits']} bits, k={f['num_hashes']}; {f['filtered_candidates']} of "
            f"{f['total_candidates']} candidates filtered"
        )
    header = (
        "provider",
        "status",
        "weight",
        "workers",
        "requests",
        "failures",
        "tokens",
        "unique",
        "latency",
        "novelty",
    )
    rows = [header]
    for name, p in status.providers.items():
        state = p.status + (f" (cooling {p.cooldown_s:.0f}s)" if p.cooldown_s else "")
        rows.append(
            (
                name,
                state,
                f"{p.weight:g}",
                str(p.served_by_workers),
                str(p.requests),
                str(p.failures),
                str(p.tokens),
                str(p.unique_contributions),
                f"{p.mean_latency_ms:.0f} ms",
                f"{p.novelty:.2f}",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines.append("")
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    for name, p in status.providers.items():
        if p.last_error:
            lines.append(f"{name}: last error: {p.last_error}")
    return "\n".join(lines)
