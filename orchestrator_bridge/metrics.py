"""Prometheus metrics of the fleet, through ``prometheus_client``.

The bridge serves ``GET /metrics`` on ``PRODUCER_METRICS_HOST:PRODUCER_METRICS_PORT``.
Nothing is counted in this process: a custom collector reads the fleet's snapshot from
Redis (``producer_tasks.state.status``) at every scrape, so every bridge of a producer id
reports the same fleet-wide numbers. Every metric carries a ``producer_id`` label.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from orchestrator_bridge.version import version
from producer_tasks.errors import ProducerError
from producer_tasks.records import Phase
from producer_tasks.state.fleet import Fleet
from producer_tasks.state.status import FleetStatus, snapshot

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
HEALTH_STATES = ("healthy", "degraded", "unhealthy", "unknown")
PHASES = tuple(phase.value for phase in Phase)


def _cumulative(counts: dict[str, int]) -> list[tuple[str, float]]:
    """Prometheus buckets (cumulative, seconds) from the outcome script's per-bucket counts."""
    buckets: list[tuple[str, float]] = []
    total = 0
    for le in LATENCY_BUCKETS_MS:
        total += counts.get(str(le), 0)
        buckets.append((f"{le / 1000:g}", total))
    buckets.append(("+Inf", total + counts.get("inf", 0)))
    return buckets


def _providers(status: FleetStatus, pid: str) -> Iterator[Metric]:
    labels = ["producer_id", "provider"]
    requests = CounterMetricFamily("producer_requests", "Provider calls made by cycles", labels=labels)
    failures = CounterMetricFamily("producer_request_failures", "Provider calls that failed", labels=labels)
    tokens = CounterMetricFamily("producer_tokens", "Tokens used", labels=[*labels, "kind"])
    cost = CounterMetricFamily(
        "producer_cost_usd", "US dollars spent, at each provider's prices per million tokens", labels=labels
    )
    unique = CounterMetricFamily(
        "producer_unique_contributions", "Attributes that passed parsing and the bloom filter", labels=labels
    )
    health = GaugeMetricFamily(
        "producer_provider_status", "1 for the provider's current health status", labels=[*labels, "status"]
    )
    demand = GaugeMetricFamily(
        "producer_provider_demand_slots",
        "Worker slots the fleet wants for this provider now (autoscaling target: this / slots per worker)",
        labels=labels,
    )
    slots = GaugeMetricFamily(
        "producer_provider_slots", "Slots of live workers consuming the provider's queue", labels=labels
    )
    waiting = GaugeMetricFamily(
        "producer_provider_lanes_waiting_for_slot",
        "Cycles in the provider's queue that no worker has taken yet",
        labels=labels,
    )
    latency = HistogramMetricFamily(
        "producer_request_duration_seconds", "Duration of provider calls", labels=[*labels, "outcome"]
    )
    for provider, view in status.providers.items():
        key = [pid, provider]
        requests.add_metric(key, view.requests)
        failures.add_metric(key, view.failures)
        tokens.add_metric([*key, "prompt"], view.prompt_tokens)
        tokens.add_metric([*key, "completion"], view.completion_tokens)
        cost.add_metric(key, view.cost_usd)
        demand.add_metric(key, view.demand_slots)
        slots.add_metric(key, view.slots)
        waiting.add_metric(key, view.lanes_waiting_for_slot)
        unique.add_metric(key, view.unique_contributions)
        for state in HEALTH_STATES:
            health.add_metric([*key, state], 1 if view.status == state else 0)
        latency.add_metric(
            [*key, "success"], _cumulative(view.latency_buckets), view.total_response_ms / 1000
        )
        latency.add_metric(
            [*key, "failure"], _cumulative(view.failed_latency_buckets), view.failed_response_ms / 1000
        )
    yield from (requests, failures, tokens, cost, unique, health, demand, slots, waiting, latency)


def _strategies(status: FleetStatus, pid: str) -> Iterator[Metric]:
    """Per provider and prompt strategy, for the current topic: its yield, cycles, winner."""
    labels = ["producer_id", "provider", "strategy"]
    yields = GaugeMetricFamily(
        "producer_strategy_yield",
        "New attributes per 1,000 tokens the prompt strategy brings now (its yield against the provider's "
        "recent one, times that; tokens weighted by price where prices are known)",
        labels=labels,
    )
    cycles = CounterMetricFamily(  # starts again from 0 with each new topic, as a counter reset
        "producer_strategy_cycles", "Cycles that ran the prompt strategy for the current topic", labels=labels
    )
    winning = GaugeMetricFamily(
        "producer_strategy_winning", "1 for the prompt strategy winning on the provider", labels=labels
    )
    for provider, view in status.providers.items():
        for name, found in view.strategies.items():
            key = [pid, provider, name]
            yields.add_metric(key, found.per_1000_tokens)
            cycles.add_metric(key, found.tried)
            winning.add_metric(key, 1 if name == view.strategy else 0)
    yield from (yields, cycles, winning)


def _phase(status: FleetStatus, pid: str) -> GaugeMetricFamily:
    phase = GaugeMetricFamily(
        "producer_phase",
        "1 for the fleet's current phase (idle, running, stopping, stopped)",
        labels=["producer_id", "phase"],
    )
    for name in PHASES:
        phase.add_metric([pid, name], 1 if status.phase == name else 0)
    return phase


def _fleet(status: FleetStatus, pid: str) -> Iterator[Metric]:
    def gauge(name: str, text: str, value: float) -> GaugeMetricFamily:
        family = GaugeMetricFamily(name, text, labels=["producer_id"])
        family.add_metric([pid], value)
        return family

    def counter(name: str, text: str, value: float) -> CounterMetricFamily:
        family = CounterMetricFamily(name, text, labels=["producer_id"])
        family.add_metric([pid], value)
        return family

    yield gauge("producer_backlog_batches", "Batches waiting for the bridge", status.backlog)
    yield gauge(
        "producer_backlog_limit_batches",
        "Batches the stream may hold before cycles wait (PRODUCER_MAX_BACKLOG)",
        status.max_backlog,
    )
    yield counter("producer_spent_usd", "US dollars spent by every call so far", status.spent_usd)
    if status.budget_usd is not None:
        yield gauge("producer_budget_usd", "PRODUCER_BUDGET_USD", status.budget_usd)
        yield gauge("producer_budget_reached", "1 once the budget was reached", int(status.budget_reached))
    yield gauge("producer_cycles_in_flight", "Cycles running or taken by a worker", status.cycles_in_flight)
    yield gauge("producer_live_workers", "Workers with a fresh heartbeat", len(status.workers))
    yield counter(
        "producer_batches_appended",
        "Batches appended to the stream",
        status.counters.get("batches_appended", 0),
    )
    yield counter(
        "producer_attributes_appended",
        "Attributes appended to the stream",
        status.counters.get("attributes_appended", 0),
    )
    if status.bloom:
        yield counter(
            "producer_bloom_candidates",
            "Candidates checked against the bloom filter",
            status.bloom["total_candidates"],
        )
        yield counter(
            "producer_bloom_filtered",
            "Candidates dropped as already seen",
            status.bloom["filtered_candidates"],
        )
    if status.bridge:
        yield gauge(
            "producer_bridge_connected",
            "1 while connected to the orchestrator",
            int(status.bridge.get("connected", 0)),
        )
        for field in BRIDGE_COUNTERS:
            yield counter(
                f"producer_bridge_{field}",
                f"Bridge: {field.replace('_', ' ')}",
                int(status.bridge.get(field, 0)),
            )


class FleetCollector(Collector):
    """Reads the fleet from Redis at scrape time."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.producer_id = fleet.keys.producer_id

    def collect(self) -> Iterator[Metric]:
        info = InfoMetricFamily("producer_build", "The producer's version", labels=["producer_id"])
        info.add_metric([self.producer_id], {"version": version()})
        yield info
        status = snapshot(self.fleet)  # a ProducerError fails the scrape (HTTP 500), never the bridge
        yield from _providers(status, self.producer_id)
        yield from _strategies(status, self.producer_id)
        yield _phase(status, self.producer_id)
        yield from _fleet(status, self.producer_id)


def registry_for(fleet: Fleet) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector(fleet))
    return registry


MAX_WORKERS = 8  # requests answered at once (a scrape reads Redis; probes are quick)
MAX_WAITING = 32  # connections accepted and waiting for a worker; beyond: closed at once
REQUEST_TIMEOUT_S = 10.0  # a connection's whole life from its acceptance, waiting included


class _Server(WSGIServer):
    """socketserver's documented hooks (``process_request``, ``finish_request``,
    ``shutdown_request``, ``service_actions``) over a bounded pool: at most MAX_WORKERS
    threads, MAX_WAITING connections waiting; a flood of stalled connections costs neither
    threads nor file descriptors beyond that, so the bridge keeps reaching Redis and its
    orchestrator. Each connection has REQUEST_TIMEOUT_S from its acceptance (a client that
    drips a byte at a time does not renew it): past it, the serving loop shuts it down, so the
    slots a flood took are free again that long after it, whatever the clients do."""

    request_queue_size = 128  # the listen backlog (socketserver's default, 5, drops SYNs in a burst)

    def server_activate(self) -> None:
        super().server_activate()
        self.pool = ThreadPoolExecutor(MAX_WORKERS, thread_name_prefix="producer-metrics")
        self.slots = threading.BoundedSemaphore(MAX_WORKERS + MAX_WAITING)
        self.deadlines: dict[socket.socket, float] = {}
        self.deadlines_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):
            self.shutdown_request(request)  # full: close now rather than hold a descriptor
            return
        with self.deadlines_lock:
            self.deadlines[request] = time.monotonic() + REQUEST_TIMEOUT_S
        self.pool.submit(self._answer, request, client_address)

    def service_actions(self) -> None:
        """Called by ``serve_forever`` every poll (0.5 s): connections past their deadline are
        shut down; the thread blocked on one reads end-of-file and lets it go."""
        now = time.monotonic()
        with self.deadlines_lock:
            late = [request for request, deadline in self.deadlines.items() if deadline <= now]
            for request in late:
                del self.deadlines[request]
        for request in late:
            with contextlib.suppress(OSError):
                request.shutdown(socket.SHUT_RDWR)

    def _answer(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except (TimeoutError, ConnectionError):
            pass  # a client that stalled past REQUEST_TIMEOUT_S or left: nothing to report
        except Exception:
            self.handle_error(request, client_address)
        finally:
            with self.deadlines_lock:
                self.deadlines.pop(request, None)
            self.shutdown_request(request)
            self.slots.release()

    def server_close(self) -> None:
        super().server_close()
        self.pool.shutdown(wait=False, cancel_futures=True)


class _QuietHandler(WSGIRequestHandler):
    timeout = REQUEST_TIMEOUT_S  # socketserver's per-connection socket timeout

    def log_message(self, format: str, *args: Any) -> None:  # scrapes are not news
        pass


def autoscaling_json(fleet: Fleet) -> bytes:
    """``/autoscaling``: per provider, slots wanted and served (KEDA's metrics-api scaler reads
    ``providers.<name>.demand_slots``)."""
    status = snapshot(fleet)
    body = {
        "producer_id": status.producer_id,
        "phase": status.phase,
        "providers": {
            name: {
                "demand_slots": view.demand_slots,
                "slots": view.slots,
                "lanes_waiting_for_slot": view.lanes_waiting_for_slot,
                "status": view.status,
            }
            for name, view in status.providers.items()
        },
    }
    return json.dumps(body).encode()


@dataclass(frozen=True)
class Probes:
    """The bridge's answers to ``/healthz`` and ``/readyz``: None when fine, else why not."""

    alive: Callable[[], str | None]
    ready: Callable[[], str | None]


def probe_response(why_not: str | None, start_response: Callable[..., Any]) -> list[bytes]:
    if why_not is None:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok\n"]
    start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
    return [f"{why_not}\n".encode()]


def metrics_app(fleet: Fleet, probes: Probes | None = None) -> Callable[..., Iterable[bytes]]:
    """prometheus_client's WSGI app on ``/metrics``, the autoscaling JSON on ``/autoscaling``,
    the bridge's liveness and readiness on ``/healthz`` and ``/readyz``; GET/HEAD only."""
    app = make_wsgi_app(registry_for(fleet))
    checks = {"/healthz": probes.alive, "/readyz": probes.ready} if probes is not None else {}
    paths = ("/metrics", "/autoscaling", *checks)

    def routes(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO")
        if path not in paths:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [f"try {' or '.join(paths)}\n".encode()]
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [("Content-Type", "text/plain"), ("Allow", "GET, HEAD")])
            return [f"GET {path}\n".encode()]
        if path in checks:
            return probe_response(checks[path](), start_response)
        if path == "/autoscaling":
            try:
                body = autoscaling_json(fleet)
            except ProducerError as exc:  # Redis unreachable: the scaler keeps its last decision
                start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
                return [f"{exc}\n".encode()]
            start_response("200 OK", [("Content-Type", "application/json")])
            return [body]
        return app(environ, start_response)  # type: ignore[no-any-return]

    return routes


@dataclass
class MetricsServer:
    server: WSGIServer
    thread: threading.Thread

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def serve_metrics(fleet: Fleet, host: str, port: int, probes: Probes | None = None) -> MetricsServer:
    """``GET /metrics`` in a thread of its own (a scrape reads Redis; the bridge's loop never waits)."""
    server = make_server(host, port, metrics_app(fleet, probes), _Server, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="producer-metrics", daemon=True)
    thread.start()
    log.info("metrics on %s:%d/metrics", host, port)
    return MetricsServer(server, thread)
