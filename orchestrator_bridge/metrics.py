"""Prometheus metrics of the fleet: the text exposition and the HTTP endpoint serving it.

The bridge serves ``GET /metrics`` on ``PRODUCER_METRICS_PORT``; every scrape reads the
fleet's snapshot from Redis (``producer_tasks.state.status``).
"""

from __future__ import annotations

import asyncio
import logging

from producer_tasks.errors import ProducerError
from producer_tasks.state.fleet import Fleet
from producer_tasks.state.status import ProviderView, snapshot

log = logging.getLogger(__name__)

LATENCY_BUCKETS_MS = (100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000)  # as in state/lua/outcome.lua
BRIDGE_COUNTERS = (
    "batches_forwarded",
    "attributes_forwarded",
    "bad_frames",
    "rejected_configurations",
    "connects",
    "stale_batches_dropped",
    "state_restores",
    "batches_resent",
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


def _provider_metrics(out: _Exposition, provider: str, stats: ProviderView) -> None:
    p = {"provider": provider}
    out.add("producer_requests_total", "counter", "Provider calls made by cycles", stats.requests, p)
    out.add("producer_request_failures_total", "counter", "Provider calls that failed", stats.failures, p)
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
        cumulative += stats.latency_buckets.get(str(le), 0)
        out.add(f"{histogram}_bucket", "histogram", help_text, cumulative, {**p, "le": f"{le / 1000:g}"})
    cumulative += stats.latency_buckets.get("inf", 0)
    out.add(f"{histogram}_bucket", "histogram", help_text, cumulative, {**p, "le": "+Inf"})
    out.add(f"{histogram}_sum", "histogram", help_text, stats.total_response_ms / 1000, p)
    out.add(f"{histogram}_count", "histogram", help_text, cumulative, p)


def render_metrics(fleet: Fleet) -> str:
    status = snapshot(fleet)
    out = _Exposition()
    for provider, view in status.providers.items():
        _provider_metrics(out, provider, view)
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


async def serve_metrics(fleet: Fleet, host: str, port: int) -> asyncio.Server:
    """A minimal HTTP endpoint: ``GET /metrics`` in the Prometheus text format."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
            path = request.split(b" ", 2)[1] if request.count(b" ") >= 2 else b"/"
            if path.split(b"?")[0] != b"/metrics":
                status, body = b"404 Not Found", b"try /metrics\n"
            else:
                try:
                    status, body = b"200 OK", (await asyncio.to_thread(render_metrics, fleet)).encode()
                except ProducerError as exc:
                    status, body = b"503 Service Unavailable", f"{exc}\n".encode()
            writer.write(
                b"HTTP/1.1 "
                + status
                + b"\r\nContent-Type: text/plain; version=0.0.4\r\n"
                + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
                + body
            )
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(answer, host, port)
    log.info("metrics on %s:%d/metrics", host, port)
    return server
