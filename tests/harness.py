"""Real processes for integration tests: Celery workers, beat, bridge, orchestrator.

Each process writes its log to a file; ``Processes.stop_all`` ends what it started, by PID.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CELERY = [sys.executable, "-m", "celery", "-A", "producer_tasks"]
PRODUCER = str(Path(sys.executable).parent / "producer")


def wait_for(
    predicate: Callable[[], bool],
    *,
    timeout_s: float = 30.0,
    interval_s: float = 0.1,
    what: str = "condition",
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


async def eventually(
    predicate: Callable[[], bool], *, timeout_s: float = 10.0, what: str = "condition"
) -> None:
    """``wait_for`` for a test on the event loop: the loop keeps running while it waits."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.02)


@dataclass
class Processes:
    log_dir: Path
    env: dict[str, str]
    started: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def spawn(
        self, name: str, args: list[str], *, extra_env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("PRODUCER_", "OPENAI_", "ANTHROPIC_"))
        }
        env.update(self.env)
        env.update(extra_env or {})
        env["PYTHONUNBUFFERED"] = "1"
        log = (self.log_dir / f"{name}.log").open("ab")
        process = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        self.started.append((name, process))
        return process

    def worker(
        self,
        name: str,
        queues: str,
        *,
        concurrency: int = 8,
        pool: str = "threads",
        extra_env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        return self.spawn(
            name,
            [
                *CELERY,
                "worker",
                "-Q",
                queues,
                "-P",
                pool,
                "-c",
                str(concurrency),
                "-n",
                f"{name}@%h",
                "--loglevel",
                "INFO",
                "--without-gossip",
                "--without-mingle",
            ],
            extra_env=extra_env,
        )

    def beat(self) -> subprocess.Popen[bytes]:
        return self.spawn("beat", [*CELERY, "beat", "--loglevel", "INFO"])

    def bridge(self, name: str = "bridge") -> subprocess.Popen[bytes]:
        return self.spawn(name, [sys.executable, "-m", "orchestrator_bridge"])

    def orchestrator(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        return self.spawn(name, [sys.executable, "-m", "orchestrator_bridge.cli", "orchestrator", *args])

    def log(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self, process: subprocess.Popen[bytes], *, timeout_s: float = 15) -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)

    def stop_all(self) -> None:
        for _, process in reversed(self.started):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for _, process in reversed(self.started):
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        self.started.clear()


@dataclass(frozen=True)
class DedupResult:
    received: int  # attributes that reached the orchestrator
    unique: int
    batches: int

    @property
    def duplicates(self) -> int:
        return self.received - self.unique


def dedup_run(
    redis_url: str, log_dir: Path, *, bloom_filter: bool, count: int, vocabulary: int, concurrency: int = 4
) -> DedupResult:
    """Orchestrator + bridge + one mock worker until ``count`` unique attributes."""
    import json

    import redis

    from orchestrator_bridge.cli.embedded import free_port
    from producer_tasks.bloomhash import normalize

    with redis.Redis.from_url(redis_url) as client:
        client.flushall()
    port = free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    env = {
        "REDIS_URL": redis_url,
        "ORCHESTRATOR_ADDR": f"127.0.0.1:{port}",
        "PRODUCER_MOCK_LATENCY_MS": "20",
        "PRODUCER_MOCK_VOCABULARY": str(vocabulary),
        "PRODUCER_CONCURRENCY": str(concurrency),
        "PRODUCER_BLOOM_FILTER": "true" if bloom_filter else "false",
        "PRODUCER_BLOOM_CAPACITY": "100000",
        "PRODUCER_BLOOM_ERROR_RATE": "0.001",
    }
    processes = Processes(log_dir, env)
    batch_log = log_dir / "batches.jsonl"
    try:
        orchestrator = processes.orchestrator(
            "orch",
            "--listen",
            f"127.0.0.1:{port}",
            "--topic",
            "cheese",
            "--weight",
            "mock=1",
            "--batch-size",
            "20",
            "--count",
            str(count),
            "--batch-log",
            str(batch_log),
            "--bloom-interval",
            "2",
        )
        processes.worker("w1", "mock", concurrency=concurrency)
        processes.bridge()
        orchestrator.wait(timeout=300)
    finally:
        processes.stop_all()
    received: list[str] = []
    lines = batch_log.read_text().splitlines() if batch_log.exists() else []
    for line in lines:
        received.extend(json.loads(line)["attributes"])
    return DedupResult(len(received), len({normalize(a) for a in received}), len(lines))


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PRODUCER_", "OPENAI_", "ANTHROPIC_", "REDIS_", "CELERY_"))
    }
    env.update(extra)
    return env


class Terminal:
    """A real terminal (tmux) running one command: what a person types, what the screen shows."""

    def __init__(self, command: str, env: dict[str, str], cwd: Path, *, width: int = 80) -> None:
        tmux = shutil.which("tmux")
        if tmux is None:  # .ci/run installs it: there, its absence is a failure
            (pytest.fail if os.environ.get("CI") else pytest.skip)("tmux is not installed")
        self.tmux = tmux
        self.session = f"producer-{uuid.uuid4().hex[:8]}"
        env_args = " ".join(shlex.quote(f"{k}={v}") for k, v in env.items() if k != "TMUX")
        subprocess.run(
            [
                tmux,
                "new-session",
                "-d",
                "-s",
                self.session,
                "-x",
                str(width),
                "-y",
                "24",
                "-c",
                str(cwd),
                f"env -i {env_args} {command}; echo exit=$?; sleep 60",
            ],
            check=True,
            timeout=30,
        )

    def screen(self) -> str:
        shown = subprocess.run(
            [self.tmux, "capture-pane", "-p", "-t", self.session],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        return shown.stdout

    def ctrl_c(self) -> None:
        subprocess.run([self.tmux, "send-keys", "-t", self.session, "C-c"], check=True, timeout=10)

    def close(self) -> None:
        subprocess.run([self.tmux, "kill-session", "-t", self.session], timeout=10, check=False)
