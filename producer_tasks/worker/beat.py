"""Celery beat scheduler: highly available, and health checks only where a worker serves.

Several beat processes may run (one per machine, say): exactly one schedules at a time. Each
holds or waits for a lease in Redis (``prod:<id>:beat_lease``), renewed at every tick; when
the leader dies (or stalls past the lease), another takes over within one health-check
interval, and a warm shutdown hands the lease over at once. A provider's health check is
sent only when a live worker serves its queue; without that, health-check messages for a
provider nobody serves would pile up in its queue. The schedule itself is
``beat_schedule`` in ``celeryconfig``.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from typing import Any

from celery.beat import Scheduler

from producer_tasks.errors import ProducerError
from producer_tasks.liveness import LivenessFile, liveness_path
from producer_tasks.settings import get_settings
from producer_tasks.state.fleet import Fleet

log = logging.getLogger(__name__)


def lease_timing(interval_s: float) -> tuple[float, int]:
    """(seconds between lease renewals, lease lifetime in ms): a standby beat notices a dead
    leader within lifetime + renewal = one health-check interval."""
    renew_s = max(0.2, min(5.0, interval_s / 4))
    return renew_s, round(3 * renew_s * 1000)


class FleetScheduler(Scheduler):  # type: ignore[misc]
    """In-memory schedule (nothing to persist) that runs only while it holds the fleet's
    beat lease, and skips unserved providers."""

    _fleet: Fleet | None = None
    _liveness: LivenessFile | None = None
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    leading = False

    def fleet(self) -> Fleet:
        if self._fleet is None:
            self._fleet = Fleet.from_settings(get_settings())
        return self._fleet

    def tick(self, *args: Any, **kwargs: Any) -> float:
        settings = get_settings()
        renew_s, ttl_ms = lease_timing(settings.health_check_interval_s)
        if self._liveness is None:
            self._liveness = LivenessFile(liveness_path(settings, "beat"))  # `producer healthcheck beat`
        redis_ok = True
        try:
            fleet = self.fleet()
            leading = fleet.hold_lease(fleet.keys.beat_lease, self.owner, ttl_ms)
        except ProducerError as exc:  # Redis unreachable: schedule nothing, try again
            log.warning("beat could not read its lease: %s", exc)
            leading = redis_ok = False
        self._liveness.beat(redis_ok=redis_ok)
        if leading != self.leading:
            log.info(
                "beat %s %s", self.owner, "schedules now" if leading else "stands by (another beat schedules)"
            )
            self.leading = leading
        if not leading:
            return renew_s
        return float(min(super().tick(*args, **kwargs), renew_s))

    def close(self) -> None:
        if self.leading and self._fleet is not None:
            try:  # hand over at once instead of after the lease runs out
                self._fleet.hold_lease(self._fleet.keys.beat_lease, self.owner, 0)
            except ProducerError as exc:
                log.warning("beat could not give up its lease: %s", exc)
        if self._liveness is not None:
            self._liveness.remove()
        super().close()

    def apply_async(self, entry: Any, producer: Any = None, advance: bool = True, **kwargs: Any) -> Any:
        provider = (entry.kwargs or {}).get("provider")
        if provider and not self._served(provider):
            log.debug("skip %s: no live worker consumes queue %r", entry.name, provider)
            return None
        return super().apply_async(entry, producer=producer, advance=advance, **kwargs)

    def _served(self, provider: str) -> bool:
        try:
            return self.fleet().serving_workers(provider) > 0
        except Exception as exc:  # a scheduler hook must never stop beat: send, the task copes
            log.warning("beat could not read live workers: %s", exc)
            return True
