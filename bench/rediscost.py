"""Redis's cost of one cycle, taken apart: what the server spends, per script and command.

One process runs cycles one after another against its own redis-server, with the mock
provider answering at once: it pops each cycle message from the provider's broker list
as kombu does (BRPOP), runs the cycle with the message's acknowledgement, and so makes
every Redis call a worker makes per cycle (the bridge's are not included; bench/scale.py
measures the whole fleet). Measured: redis-server's CPU per cycle and the round trips a
cycle makes; in a second pass, the server's own time per script and command (SLOWLOG at
a 0 µs threshold: the log costs time itself, so only the split is taken from it).
Baseline, in the same run: as many round trips of a bare PING, what a cycle costs Redis
before any command does anything.
"""

from __future__ import annotations

import base64
import contextlib
import json
import random
from collections import Counter
from collections.abc import Iterator
from typing import Any

import psutil
import redis
from redis.connection import Connection

import producer_tasks
from bench.report import write_section
from bench.scale import cpu_s
from orchestrator_bridge.cli.embedded import EmbeddedRedis
from producer_tasks.generation.cycle import run_cycle
from producer_tasks.runtime import Runtime
from producer_tasks.settings import load_settings
from producer_tasks.state import control, stream
from producer_tasks.worker.current import CeleryDispatcher

CYCLES = 3000
WARMUP = 200


@contextlib.contextmanager
def counted_round_trips() -> Iterator[Counter[str]]:
    """Counts what redis-py sends: one packed command or pipeline a round trip."""
    counts: Counter[str] = Counter()
    send = Connection.send_packed_command

    def counting(self: Connection, command: Any, check_health: bool = True) -> None:
        counts["sent"] += 1
        send(self, command, check_health)

    Connection.send_packed_command = counting  # type: ignore[method-assign]
    try:
        yield counts
    finally:
        Connection.send_packed_command = send  # type: ignore[method-assign]


class Cycles:
    """A runtime on its own server, with the topic started and one lane (mock) dispatched."""

    def __init__(self, server: EmbeddedRedis) -> None:
        env = {
            "REDIS_URL": server.url,
            "PRODUCER_ID": "bench",
            "PRODUCER_MOCK_LATENCY_MS": "0",
            "PRODUCER_MOCK_VOCABULARY": "10000000",
            "PRODUCER_BLOOM_FILTER": "true",
            "PRODUCER_CONCURRENCY": "1",
            "PRODUCER_MAX_BACKLOG": "1000000",
        }
        settings = load_settings(env)
        self.dispatcher = CeleryDispatcher(producer_tasks.app, broker_is_fleet=True)
        self.rt = Runtime.create(settings, self.dispatcher, rng=random.Random(1))
        self.client = redis.Redis.from_url(server.url, decode_responses=True)
        assert self.dispatcher.messages is not None
        self.queue = self.dispatcher.messages.prefix + "mock"
        fleet = self.rt.fleet
        fleet.heartbeat("bench@local", ["mock"])
        stream.ensure_group(fleet)
        started = control.start_topic(
            fleet, settings, topic="cheese", prompt="List {batch_size} {topic}",
            weights={"mock": 1.0}, temperature=0.7, max_tokens=200, batch_size=10,
        )  # fmt: skip
        assert started.accepted, started.reason
        self.rt.lanes.reconcile()

    def one(self) -> str:
        _, raw = self.client.brpop([self.queue], timeout=5)
        message = json.loads(raw)
        _, kwargs, _ = json.loads(base64.b64decode(message["body"]))
        tag = message["properties"]["delivery_tag"]
        return run_cycle(
            self.rt, worker="bench#1", acknowledgement=self.dispatcher.acknowledgement(tag), **kwargs
        ).value

    def run(self, n: int) -> None:
        for i in range(n):
            if i % 500 == 0:
                self.rt.fleet.heartbeat("bench@local", ["mock"])
            outcome = self.one()
            assert outcome in ("delivered", "empty"), outcome


def cycle_pass(server: EmbeddedRedis, process: psutil.Process) -> tuple[float, float]:
    """Server CPU µs and round trips per cycle."""
    cycles = Cycles(server)
    cycles.run(WARMUP)
    with counted_round_trips() as trips:
        before = cpu_s(process)
        cycles.run(CYCLES)
        used = cpu_s(process) - before
    return 1e6 * used / CYCLES, trips["sent"] / CYCLES


def split_pass(server: EmbeddedRedis) -> dict[str, tuple[float, float]]:
    """Per script (EVALSHA by name) and top-level command: server µs and calls per cycle.
    Commands a script calls are inside its time, and listed under their own names too."""
    cycles = Cycles(server)
    cycles.run(WARMUP)
    client = cycles.client
    client.config_set("slowlog-log-slower-than", 0)
    client.config_set("slowlog-max-len", 1_000_000)
    client.slowlog_reset()
    cycles.run(CYCLES)
    entries = client.slowlog_get(1_000_000)
    client.config_set("slowlog-log-slower-than", 10_000)
    names = {script.sha: name for name, script in cycles.rt.fleet.scripts.items()}
    total: Counter[str] = Counter()
    calls: Counter[str] = Counter()
    for entry in entries:
        command = entry["command"]
        words = (command.decode(errors="replace") if isinstance(command, bytes) else command).split()
        name = words[0].upper()
        if name == "EVALSHA" and len(words) > 1:
            name = f"script {names.get(words[1], words[1][:8])}"
        total[name] += entry["duration"]
        calls[name] += 1
    return {name: (usec / CYCLES, calls[name] / CYCLES) for name, usec in total.most_common()}


def floor_pass(server: EmbeddedRedis, process: psutil.Process, trips: int) -> tuple[float, float]:
    """Server CPU µs per round trip of a bare PING, and the kernel's share of it."""
    client = redis.Redis.from_url(server.url)
    before = process.cpu_times()
    for _ in range(trips):
        client.ping()
    after = process.cpu_times()
    user, system = after.user - before.user, after.system - before.system
    return 1e6 * (user + system) / trips, system / max(1e-9, user + system)


def run() -> dict[str, object]:
    with EmbeddedRedis(unix_socket=False) as server:
        assert server.process is not None
        process = psutil.Process(server.process.pid)
        cycle_us, trips = cycle_pass(server, process)
        trip_us, kernel = floor_pass(server, process, round(trips * CYCLES))
    with EmbeddedRedis(unix_socket=False) as server:
        split = split_pass(server)
    rows = "\n".join(f"| {name} | {usec:.1f} | {n:.2f} |" for name, (usec, n) in list(split.items())[:14])
    write_section(
        "rediscost",
        f"""
## Redis: the cost of one cycle, taken apart

One process runs {CYCLES:,} cycles one after another against its own redis-server (mock
provider, no latency, bloom filter on, novelty prompts, 10 attributes a batch), popping
each cycle message from the broker list as kombu does and acknowledging it in the
cycle's delivery round trip: every Redis call a worker makes for a cycle (the bridge's
are not included). Baseline in the same run: as many round trips of a bare `PING`.

| | redis-server CPU per cycle |
| --- | ---: |
| {trips:.2f} round trips of a bare `PING` (baseline) | {trips * trip_us:.0f} µs |
| one cycle (ours) | {cycle_us:.0f} µs |

**A cycle costs Redis {cycle_us / (trips * trip_us):.1f}× its bare round trips**
({trip_us:.0f} µs of CPU per round trip on this machine, {kernel:.0%} of it in the kernel).

Where the server's own time goes (`SLOWLOG` at 0 µs in a second pass: µs of command
time per cycle; a script's time includes the commands it calls, which are listed under
their own names too):

| script or command | µs per cycle | calls per cycle |
| --- | ---: | ---: |
{rows}
""",
    )
    return {"cycle_us": cycle_us, "trips": trips, "trip_us": trip_us, "kernel": kernel, "split": split}
