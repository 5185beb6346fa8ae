"""A worker's heartbeat thread: registers the worker and its queues, and reconciles.

During a warm shutdown it drains (alive, serving no queue) until the pool has finished.

Every worker refreshes its entry in Redis a few times per lease; the live worker that
takes the fleet-wide lock first runs ``Lanes.reconcile`` (about once a second), so lanes
of a killed worker are restored within seconds without any single point of failure, and
appends the journalled batches of cycles that died between their bloom check and their
append.
"""

from __future__ import annotations

import logging
import threading
import time

from producer_tasks.errors import ProducerError
from producer_tasks.generation.cycle import PERSIST_DEADLINE_S
from producer_tasks.liveness import LivenessFile, liveness_path
from producer_tasks.runtime import Runtime
from producer_tasks.state import stream

log = logging.getLogger(__name__)
PRUNE_EVERY_TICKS = 60  # the lock holder forgets dead workers' slots about once a minute
JOURNAL_AGE_MS = round((PERSIST_DEADLINE_S + 60) * 1000)  # older: no live cycle still retries it


class Heartbeat(threading.Thread):
    def __init__(self, runtime: Runtime, *, worker: str, queues: list[str], slots: int = 0) -> None:
        super().__init__(name=f"producer-heartbeat-{worker}", daemon=True)
        self.runtime = runtime
        self.worker = worker
        self.queues = queues
        self.slots = slots  # the pool's concurrency: what autoscaling counts
        self.ticks = 0
        self.stopping = threading.Event()
        self.draining = threading.Event()
        settings = runtime.settings
        self.beat_s = min(settings.lane_lease_s / 3, settings.reconcile_interval_s)
        self.reconcile_ms = round(settings.reconcile_interval_s * 1000)
        self.liveness = LivenessFile(liveness_path(settings, "worker"))  # `producer healthcheck worker`

    def run(self) -> None:
        log.info("worker %s serves queues %s", self.worker, ", ".join(self.queues) or "(none)")
        while not self.stopping.is_set():
            started = time.monotonic()
            redis_ok = False
            try:
                self.tick()
                redis_ok = True
            except ProducerError as exc:
                log.warning("heartbeat: %s", exc)
            except Exception:  # a failing hook must never kill the worker
                log.exception("heartbeat failed")
            self.liveness.beat(redis_ok=redis_ok)
            self.stopping.wait(max(0.05, self.beat_s - (time.monotonic() - started)))

    def tick(self) -> None:
        fleet = self.runtime.fleet
        if self.draining.is_set():  # alive for the lanes it still runs; serves and restores nothing
            fleet.heartbeat(self.worker, [])
            return
        fleet.heartbeat(self.worker, self.queues, slots=self.slots)
        self.ticks += 1
        if fleet.try_lock(fleet.keys.reconcile_lock, self.reconcile_ms, self.worker):
            self.runtime.lanes.reconcile()
            stream.recover_journal(fleet, older_than_ms=JOURNAL_AGE_MS)
            if self.ticks % PRUNE_EVERY_TICKS == 0:
                fleet.prune_slots()

    def drain(self) -> None:
        """Warm shutdown began: keep heart-beating until the last task finished (so its lanes
        are not restored elsewhere while they still run), but take no new lanes."""
        self.draining.set()
        try:
            self.runtime.fleet.unregister(self.worker, queues_only=True)
        except ProducerError as exc:
            log.warning("could not stop serving the queues of %s: %s", self.worker, exc)

    def stop(self) -> None:
        self.stopping.set()
        if self.is_alive():
            self.join(timeout=5)
        self.liveness.remove()
        try:
            self.runtime.fleet.unregister(self.worker)
        except ProducerError as exc:
            log.warning("could not unregister %s: %s", self.worker, exc)
