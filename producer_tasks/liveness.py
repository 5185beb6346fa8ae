"""Liveness files: a worker's heartbeat and beat's tick leave a note on local disk that
``producer healthcheck worker|beat`` reads (a Kubernetes exec probe, a systemd watchdog
script): no Redis round trip, no broker message, nothing that fails when Redis does.

The file's modification time is the last heartbeat or tick of a process of that role (any
of them: one container runs one); its content says when Redis last answered, so the probe
can tell "alive, Redis unreachable" (not a reason to restart) from "stuck" (one).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from producer_tasks.settings import Settings

Role = Literal["worker", "beat"]
ROLES: tuple[Role, ...] = ("worker", "beat")
DEFAULT_MAX_AGE_S = 30.0  # a worker beats every second, beat ticks every 5 s at most


def liveness_path(settings: Settings, role: Role) -> Path:
    return Path(settings.health_dir) / f"producer-{settings.id}-{role}.alive"


@dataclass(frozen=True)
class Liveness:
    """What a process of ``role`` last wrote."""

    age_s: float  # since its last heartbeat or tick
    pid: int
    redis_age_s: float | None  # since Redis last answered it (None: never)


class LivenessFile:
    """Written by the process at every heartbeat or tick (atomically: a probe never reads half)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.redis_ok_at: float | None = None

    def beat(self, *, redis_ok: bool) -> None:
        now = time.time()
        if redis_ok:
            self.redis_ok_at = now
        body = {"pid": os.getpid(), "at": now, "redis_ok_at": self.redis_ok_at}
        partial = self.path.with_name(f"{self.path.name}.{os.getpid()}")
        try:
            partial.write_text(json.dumps(body))
            os.replace(partial, self.path)
        except OSError:  # a full or read-only disk must not stop the heartbeat; the probe will tell
            pass

    def remove(self) -> None:
        """A clean stop: the next process of the role starts without a stale note."""
        try:
            if json.loads(self.path.read_text()).get("pid") == os.getpid():
                self.path.unlink()
        except (OSError, ValueError):
            pass


def read_liveness(path: Path) -> Liveness | None:
    """The note at ``path`` (None: no process of the role has written one)."""
    try:
        body = json.loads(path.read_text())
        modified = path.stat().st_mtime
    except (OSError, ValueError):
        return None
    now = time.time()
    redis_ok_at = body.get("redis_ok_at")
    return Liveness(
        age_s=max(0.0, now - modified),
        pid=int(body.get("pid", 0)),
        redis_age_s=None if redis_ok_at is None else max(0.0, now - float(redis_ok_at)),
    )
