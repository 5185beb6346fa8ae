"""The processes ``producer run`` starts (workers, bridge, beat): logged to files, ended by PID."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)
BEAT_COMMAND = [sys.executable, "-m", "celery", "-A", "producer_tasks", "beat", "--loglevel", "INFO"]


@dataclass
class Children:
    """Processes started by ``producer run``; ended by PID, always."""

    log_dir: Path
    env: dict[str, str]
    processes: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def start(self, name: str, args: list[str]) -> None:
        with (self.log_dir / f"{name}.log").open("wb") as out:
            process = subprocess.Popen(
                args,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.processes.append((name, process))

    def dead(self) -> list[str]:
        return [name for name, p in self.processes if p.poll() is not None]

    def stop(self, *, timeout_s: float = 15.0) -> None:
        for _, process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for name, process in reversed(self.processes):
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in time; killing it", name)
                process.kill()
                process.wait(timeout=5)


def start_children(log_dir: Path, env: dict[str, str], providers: list[str], *, concurrency: int) -> Children:
    """A threads worker for each provider's queue, and the bridge (beat comes once the
    workers registered)."""
    children = Children(log_dir, env)
    for provider in providers:
        worker = f"-Q {provider} -P threads -c {concurrency} -n {provider}-{os.getpid()}@%h --loglevel INFO"
        # no other workers to sync with or gossip to (mingle alone waits ~1 s for replies)
        options = [*worker.split(), "--without-mingle", "--without-gossip"]
        children.start(
            f"worker-{provider}", [sys.executable, "-m", "celery", "-A", "producer_tasks", "worker", *options]
        )
    children.start("bridge", [sys.executable, "-m", "orchestrator_bridge"])
    return children
