"""Cycles per second of one Celery worker against a plain asyncio loop (same SDK, same load).

The fake OpenAI server runs as its own process with 200 ms latency. Baseline: 32 asyncio
tasks looping ``AsyncOpenAI.chat.completions.create`` + parsing. Ours: one worker
``-P threads -c 32`` with 32 lanes in flight, each cycle doing everything a real one does
(Redis state, health, stats, history, stream append, next dispatch).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai

from bench.report import write_section
from orchestrator_bridge.cli.embedded import EmbeddedRedis, free_port
from producer_tasks.generation.parsing import parse_response
from producer_tasks.settings import Settings, load_settings
from producer_tasks.state import control
from producer_tasks.state.fleet import Fleet

ROOT = Path(__file__).resolve().parent.parent
LATENCY_MS = 200
IN_FLIGHT = 32
WARMUP_S = 4.0
MEASURE_S = 15.0
KEY = "sk-test-fake-0123456789"


def start_fake(
    port: int, *, latency_ms: float = LATENCY_MS, vocabulary: int = 1000
) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.fakellm",
            "--port",
            str(port),
            "--latency-ms",
            str(latency_ms),
            "--vocabulary",
            str(vocabulary),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert process.stdout is not None
    process.stdout.readline()  # "listening on ..."
    return process


def worker_args(*, pool: str, concurrency: int) -> list[str]:
    """``python …``: one quiet Celery worker on the openai queue (no other workers to sync with)."""
    options = f"-Q openai -P {pool} -c {concurrency} -n bench@%h --loglevel WARNING --without-gossip --without-mingle"
    return ["-m", "celery", "-A", "producer_tasks", "worker", *options.split()]


def fake_stats(port: int) -> dict[str, int]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stats", timeout=5) as answer:
        stats: dict[str, int] = json.loads(answer.read())
    return stats


def fake_active(port: int) -> int:
    """Requests the fake server is answering right now."""
    return fake_stats(port)["active"]


@dataclass(frozen=True)
class LoopResult:
    rate: float  # requests per second over the measurement
    cpu_ms: float  # this process's CPU per request over the measurement


async def asyncio_loop(
    base_url: str, *, in_flight: int, warmup_s: float, measure_s: float, batch_size: int, watch: Any = None
) -> LoopResult:
    """The baseline: ``in_flight`` tasks looping ``AsyncOpenAI`` calls and parsing each answer;
    ``watch`` (a context manager) runs around the measurement."""
    client = openai.AsyncOpenAI(api_key=KEY, base_url=base_url, max_retries=0, timeout=60)
    done = 0
    measuring = False
    stop_at = time.monotonic() + warmup_s + measure_s

    async def lane() -> None:
        nonlocal done
        while time.monotonic() < stop_at:
            try:
                response = await client.chat.completions.create(
                    model="gpt-4o-mini",
                    messages=[
                        {"role": "user", "content": f"List {batch_size} distinct cheeses, one per line."}
                    ],
                    temperature=0.9,
                    max_tokens=200,
                )
            except openai.APIConnectionError:  # the fake server reset one of 1,024: not counted
                continue
            parse_response(response.choices[0].message.content or "", batch_size=batch_size)
            if measuring:
                done += 1

    tasks = [asyncio.create_task(lane()) for _ in range(in_flight)]
    await asyncio.sleep(warmup_s)
    measuring = True
    cpu0 = time.process_time()
    started = time.monotonic()
    with watch or contextlib.nullcontext():
        await asyncio.sleep(measure_s)
    cpu, elapsed, count = time.process_time() - cpu0, time.monotonic() - started, done
    await asyncio.gather(*tasks)
    await client.close()
    return LoopResult(count / elapsed, 1000 * cpu / max(1, count))


def baseline(base_url: str) -> float:
    loop = asyncio_loop(base_url, in_flight=IN_FLIGHT, warmup_s=WARMUP_S, measure_s=MEASURE_S, batch_size=10)
    return asyncio.run(loop).rate


def bench_env(redis_url: str, base_url: str, **own: str) -> tuple[dict[str, str], Settings]:
    """The environment of the processes measured (this one's, without producer or provider
    settings, then Redis, the fake OpenAI server and ``own``) and the settings it gives."""
    own = {"REDIS_URL": redis_url, "OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": base_url, **own}
    inherited = {
        k: v for k, v in os.environ.items() if not k.startswith(("PRODUCER_", "OPENAI_", "ANTHROPIC_"))
    }
    return {**inherited, **own}, load_settings(own)


def ours(base_url: str, redis: EmbeddedRedis, log: Path) -> tuple[float, int]:
    env, settings = bench_env(redis.url, base_url)
    fleet = Fleet.from_settings(settings)
    fleet.redis.flushall()
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [sys.executable, *worker_args(pool="threads", concurrency=IN_FLIGHT)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while not fleet.live_workers():
            if time.monotonic() > deadline or worker.poll() is not None:
                raise RuntimeError(f"worker did not start; see {log}")
            time.sleep(0.2)
        tuned = settings.model_copy(update={"concurrency": IN_FLIGHT, "max_backlog": 10**9})
        result = control.start_topic(
            fleet,
            tuned,
            topic="cheese",
            prompt="List {batch_size} {topic}",
            weights={"openai": 1.0},
            temperature=0.7,
            max_tokens=100,
            batch_size=10,
        )
        assert result.accepted, result.reason
        time.sleep(WARMUP_S)
        first = fleet.read_stats("openai").total_requests
        started = time.monotonic()
        time.sleep(MEASURE_S)
        last = fleet.read_stats("openai").total_requests
        elapsed = time.monotonic() - started
        control.stop(fleet)
        return (last - first) / elapsed, fleet.backlog()
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def run() -> dict[str, float]:
    port = free_port()
    fake = start_fake(port)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        with EmbeddedRedis(unix_socket=False) as redis:
            log = Path(redis.directory) / "worker.log"
            first = baseline(base_url)
            fleet_rate, backlog = ours(base_url, redis, log)
            second = baseline(base_url)
    finally:
        fake.terminate()
        fake.wait(timeout=10)
    base = statistics.mean([first, second])
    ratio = fleet_rate / base
    ideal = IN_FLIGHT * 1000 / LATENCY_MS
    write_section(
        "fleet",
        f"""
## Fleet: cycles per second, one worker `-P threads -c {IN_FLIGHT}`, {IN_FLIGHT} in flight

Fake OpenAI server (separate process) with {LATENCY_MS} ms latency; ideal = {ideal:.0f}/s (neither
side reaches it: the fake server, Redis and the client share 2 cores).
Baseline: a plain asyncio loop with `AsyncOpenAI` and {IN_FLIGHT} concurrent calls, parsing
each answer, measured before and after ours.

| | cycles/s |
| --- | ---: |
| asyncio baseline (before, after) | {first:.1f}, {second:.1f} |
| Celery fleet (ours) | {fleet_rate:.1f} |

**Ratio ours / baseline = {ratio:.2f}** (goal ≥ 0.95, issue #12). Each of our cycles also reads the
fleet state, claims its lane, records health, statistics and history, appends its batch
to the stream and pushes the lane's next cycle message onto the broker's list
({backlog} batches were in the stream at the end).
""",
    )
    return {"baseline_before": first, "baseline_after": second, "ours": fleet_rate, "ratio": ratio}


if __name__ == "__main__":
    print(run())
