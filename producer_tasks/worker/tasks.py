"""Celery tasks: thin wrappers around ``generation.cycle.run_cycle`` and the health check."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from producer_tasks.clock import now_ms
from producer_tasks.errors import ProducerError, ProviderError, ProviderNotConfiguredError, StateError
from producer_tasks.generation import providers
from producer_tasks.generation.cycle import run_cycle
from producer_tasks.records import ProviderStatus
from producer_tasks.state import outcomes
from producer_tasks.worker.app import app
from producer_tasks.worker.current import CeleryDispatcher, get_runtime, incarnation
from producer_tasks.worker.routing import CYCLE_TASK, HEALTH_CHECK_TASK

log = logging.getLogger(__name__)
MAX_REDIS_RETRY_S = 30
UNEXPECTED_ERROR_PAUSE_MS = 5000


# A Redis blip (StateError) retries the cycle later, the message kept: Celery's own
# exponential backoff (2 s, 4 s, … up to 30 s) with full jitter, without limit.
@app.task(
    name=CYCLE_TASK,
    bind=True,
    ignore_result=True,
    autoretry_for=(StateError,),
    retry_backoff=2,
    retry_backoff_max=MAX_REDIS_RETRY_S,
    retry_jitter=True,
    max_retries=None,
)
def cycle(self: Any, *, provider: str, epoch: int, lane: int, token: str) -> str:
    """One generation cycle of a lane on ``provider`` (routed to that provider's queue)."""
    rt = get_runtime()
    dispatcher = rt.lanes.dispatcher
    properties = self.request.properties or {}
    try:
        outcome = run_cycle(
            rt,
            provider=provider,
            epoch=epoch,
            lane=lane,
            token=token,
            worker=incarnation(self.request.hostname),
            acknowledgement=dispatcher.acknowledgement(properties.get("delivery_tag"))
            if isinstance(dispatcher, CeleryDispatcher)
            else None,
        )
    except StateError as exc:  # a Redis blip: retried by Celery (autoretry_for)
        log.warning("cycle of lane %d: %s; retrying", lane, exc)
        raise
    except Exception as exc:  # a bug or an unforeseen error must not strand the lane
        log.exception("cycle of lane %d on %s failed unexpectedly", lane, provider)
        reason = f"error: {type(exc).__name__}: {exc}"[:300]
        with contextlib.suppress(ProducerError):
            get_runtime().lanes.park(lane=lane, token=token, reason=reason, wait_ms=UNEXPECTED_ERROR_PAUSE_MS)
        return "error"
    return outcome.value


@app.task(name=HEALTH_CHECK_TASK, ignore_result=True)
def health_check(*, provider: str) -> str:
    """Probe a provider that is not Healthy (by default a free model lookup)."""
    rt = get_runtime()
    health = rt.fleet.read_health(provider)
    if health.status is ProviderStatus.HEALTHY:
        return "healthy"
    started = now_ms()
    try:
        providers.health_check(rt.clients, provider)
    except ProviderNotConfiguredError as exc:
        return f"skipped: {exc}"
    except ProviderError as exc:
        outcomes.record_outcome(
            rt.fleet,
            rt.settings,
            provider,
            success=False,
            error=f"health check: {exc}",
            counts_as_request=False,
        )
        log.info("health check of %s failed: %s", provider, exc)
        return "failed"
    outcomes.record_outcome(
        rt.fleet,
        rt.settings,
        provider,
        success=True,
        response_ms=now_ms() - started,
        counts_as_request=False,
    )
    log.info("health check of %s succeeded: back in selection", provider)
    return "recovered"
