"""Celery beat scheduler that sends a provider's health check only when a worker serves it.

Without that check, health-check messages for a provider nobody serves would pile up in
its queue. The schedule itself is ``beat_schedule`` in ``celeryconfig``.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.beat import Scheduler

from producer_tasks.settings import get_settings
from producer_tasks.state.fleet import Fleet

log = logging.getLogger(__name__)


class FleetScheduler(Scheduler):  # type: ignore[misc]
    """In-memory schedule (nothing to persist) that skips unserved providers."""

    _fleet: Fleet | None = None

    def apply_async(self, entry: Any, producer: Any = None, advance: bool = True, **kwargs: Any) -> Any:
        provider = (entry.kwargs or {}).get("provider")
        if provider and not self._served(provider):
            log.debug("skip %s: no live worker consumes queue %r", entry.name, provider)
            return None
        return super().apply_async(entry, producer=producer, advance=advance, **kwargs)

    def _served(self, provider: str) -> bool:
        try:
            if self._fleet is None:
                self._fleet = Fleet.from_settings(get_settings())
            return self._fleet.serving_workers(provider) > 0
        except Exception as exc:  # a scheduler hook must never stop beat: send, the task copes
            log.warning("beat could not read live workers: %s", exc)
            return True
