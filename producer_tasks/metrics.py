"""Prometheus text exposition of the fleet (served by the bridge on PRODUCER_METRICS_PORT)."""

from __future__ import annotations

from producer_tasks.fleet import Fleet, parse_stats, redis_errors
from producer_tasks.settings import PROVIDERS
from producer_tasks.status import snapshot

LATENCY_BUCKETS_MS = (100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000)  # as in lua/outcome.lua
BRIDGE_COUNTERS = (
    "batches_forwarded",
    "attributes_forwarded",
    "bad_frames",
    "rejected_configurations",
    "connects",
    "stale_batches_dropped",
)


class _Exposition:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.declared: set[str] = set()

    def add(
        self, name: str, metric_type: str, help_text: str, value: float, labels: dict[str, str] | None = None
    ) -> None:
        family = (
            name.removesuffix("_bucket").removesuffix("_sum").removesuffix("_count")
            if metric_type == "histogram"
            else name
        )
        if family not in self.declared:
            self.declared.add(family)
            self.lines.append(f"# HELP {family} {help_text}")
            self.lines.append(f"# TYPE {family} {metric_type}")
        label_text = ",".join(f'{k}="{v}"' for k, v in (labels or {}).items())
        self.lines.append(f"{name}{{{label_text}}} {value:g}" if label_text else f"{name} {value:g}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _provider_metrics(out: _Exposition, fleet: Fleet, provider: str) -> None:
    with redis_errors("read statistics"):
        raw = fleet.redis.hgetall(fleet.keys.stats(provider))
    if not raw:
        return
    stats = parse_stats(raw)
    p = {"provider": provider}
    out.add("producer_requests_total", "counter", "Provider calls made by cycles", stats.total_requests, p)
    out.add(
        "producer_request_failures_total", "counter", "Provider calls that failed", stats.failed_requests, p
    )
    out.add("producer_tokens_total", "counter", "Tokens used", stats.prompt_tokens, {**p, "kind": "prompt"})
    out.add(
        "producer_tokens_total",
        "counter",
        "Tokens used",
        stats.completion_tokens,
        {**p, "kind": "completion"},
    )
    out.add(
        "producer_unique_contributions_total",
        "counter",
        "Attributes that passed parsing and the bloom filter",
        stats.unique_contributions,
        p,
    )
    histogram = "producer_request_duration_seconds"
    help_text = "Duration of successful provider calls"
    cumulative = 0
    for le in LATENCY_BUCKETS_MS:
        cumulative += int(raw.get(f"latency_le_{le}", 0))
        out.add(f"{histogram}_bucket", "histogram", help_text, cumulative, {**p, "le": f"{le / 1000:g}"})
    cumulative += int(raw.get("latency_le_inf", 0))
    out.add(f"{histogram}_bucket", "histogram", help_text, cumulative, {**p, "le": "+Inf"})
    out.add(f"{histogram}_sum", "histogram", help_text, stats.total_response_ms / 1000, p)
    out.add(f"{histogram}_count", "histogram", help_text, cumulative, p)


def render_metrics(fleet: Fleet) -> str:
    status = snapshot(fleet)
    out = _Exposition()
    for provider in PROVIDERS:
        _provider_metrics(out, fleet, provider)
    for name, view in status.providers.items():
        for state in ("healthy", "degraded", "unhealthy", "unknown"):
            out.add(
                "producer_provider_status",
                "gauge",
                "1 for the provider's current health status",
                1 if view.status == state else 0,
                {"provider": name, "status": state},
            )
    out.add("producer_backlog_batches", "gauge", "Batches waiting for the bridge", status.backlog)
    out.add("producer_backlog_limit_batches", "gauge", "PRODUCER_MAX_BACKLOG", status.max_backlog)
    out.add(
        "producer_cycles_in_flight", "gauge", "Cycles running or taken by a worker", status.cycles_in_flight
    )
    out.add("producer_live_workers", "gauge", "Workers with a fresh heartbeat", len(status.workers))
    out.add(
        "producer_batches_appended_total",
        "counter",
        "Batches appended to the stream",
        status.counters.get("batches_appended", 0),
    )
    out.add(
        "producer_attributes_appended_total",
        "counter",
        "Attributes appended to the stream",
        status.counters.get("attributes_appended", 0),
    )
    if status.bloom:
        out.add(
            "producer_bloom_candidates_total",
            "counter",
            "Candidates checked against the bloom filter",
            status.bloom["total_candidates"],
        )
        out.add(
            "producer_bloom_filtered_total",
            "counter",
            "Candidates dropped as already seen",
            status.bloom["filtered_candidates"],
        )
    if status.bridge:
        out.add(
            "producer_bridge_connected",
            "gauge",
            "1 while connected to the orchestrator",
            int(status.bridge.get("connected", 0)),
        )
        for field in BRIDGE_COUNTERS:
            out.add(
                f"producer_bridge_{field}_total",
                "counter",
                f"Bridge: {field.replace('_', ' ')}",
                int(status.bridge.get(field, 0)),
            )
    return out.text()
