"""The per-process runtime of a worker: settings, Redis, SDK clients, dispatcher."""

from __future__ import annotations

import random
import threading
from typing import Any

from producer_tasks.cycle import Runtime
from producer_tasks.fleet import Fleet
from producer_tasks.providers import Clients
from producer_tasks.routing import CYCLE_TASK
from producer_tasks.settings import get_settings

_lock = threading.Lock()
_runtime: Runtime | None = None


class CeleryDispatcher:
    """Sends cycle messages through the Celery app (task id = the lane's token)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def send(self, *, provider: str, epoch: int, lane: int, token: str) -> None:
        self.app.send_task(
            CYCLE_TASK,
            kwargs={"provider": provider, "epoch": epoch, "lane": lane, "token": token},
            queue=provider,
            task_id=token,
        )


def get_runtime() -> Runtime:
    """The process's runtime, created on first use."""
    global _runtime
    with _lock:
        if _runtime is None:
            from producer_tasks.app import app

            settings = get_settings()
            _runtime = Runtime(
                settings=settings,
                fleet=Fleet.from_settings(settings),
                clients=Clients(settings),
                dispatcher=CeleryDispatcher(app),
                rng=random.Random(),
            )
        return _runtime


def set_runtime(runtime: Runtime | None) -> None:
    """Replace the runtime (tests; a forked child process starts with none)."""
    global _runtime
    with _lock:
        _runtime = runtime
