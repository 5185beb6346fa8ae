"""Generation lanes: the fleet-wide target of cycles in flight, kept by reconcile.

The fleet runs ``concurrency`` lanes. Each lane is a chain of cycle tasks: a finished
cycle dispatches the lane's next cycle (``dispatch``), with a fresh token; only the task
holding a lane's current token may run, so a duplicate or a restored message of a lost
worker is a cheap no-op. ``reconcile`` (run about every second by one worker, under a
lock) re-dispatches lanes that are missing, whose worker stopped heart-beating, that
waited long enough (backlog drained, provider back, backoff over), or whose message was
lost between the lane update and the send.
"""

from __future__ import annotations

import logging
import random
import uuid
from dataclasses import dataclass, field
from typing import Protocol

from producer_tasks import health
from producer_tasks.errors import NoUsableProviderError
from producer_tasks.fleet import Fleet, FleetView, now_ms, redis_errors
from producer_tasks.records import LaneRecord, LaneStatus, Phase
from producer_tasks.selection import adaptive_weights, effective_weight, weighted_choice
from producer_tasks.settings import PROVIDERS

log = logging.getLogger(__name__)

WAIT_BACKLOG = "backlog full"
WAIT_NO_PROVIDER = "no usable provider"
WAIT_RATE_LIMIT = "rate limited"
WAIT_BACKOFF = "backoff"


class Dispatcher(Protocol):
    """Sends one cycle message to a provider's queue."""

    def send(self, *, provider: str, epoch: int, lane: int, token: str) -> None: ...


def eligible_providers(view: FleetView) -> list[str]:
    """Weight above 0, served by a live worker, not Unhealthy, not cooling down."""
    weights = view.state.weights
    return [
        p
        for p in PROVIDERS
        if effective_weight(weights.get(p)) > 0
        and p in view.live_queues
        and health.is_usable(view.health[p], now_ms=view.now_ms)
    ]


def no_provider_reason(view: FleetView) -> str:
    """Why no provider can take a cycle, one clause per weighted provider."""
    reasons = []
    for p in PROVIDERS:
        if effective_weight(view.state.weights.get(p)) <= 0:
            continue
        why = health.unusable_reason(view.health[p], now_ms=view.now_ms)
        if p not in view.live_queues:
            why = f"no live worker consumes queue {p!r}"
        reasons.append(f"{p}: {why or 'usable'}")
    return "; ".join(reasons) or "no provider has a weight above 0"


def selection_weights(view: FleetView, *, adaptive: bool) -> dict[str, float]:
    weights = dict(view.state.weights)
    if not adaptive or not view.stats:
        return weights
    return adaptive_weights(
        weights,
        novelty={p: s.ema_novelty for p, s in view.stats.items()},
        success={p: s.ema_success for p, s in view.stats.items()},
    )


def choose_provider(view: FleetView, *, adaptive: bool = False, rng: random.Random | None = None) -> str:
    eligible = eligible_providers(view)
    if not eligible:
        raise NoUsableProviderError(no_provider_reason(view))
    return weighted_choice(eligible, selection_weights(view, adaptive=adaptive), rng=rng)


def assign(
    fleet: Fleet, *, lane: int, expected: str, provider: str, epoch: int, failures: int = -1
) -> str | None:
    """Give the lane a new token (compare-and-set on ``expected``); the token, or None."""
    token = uuid.uuid4().hex
    done = fleet.script(
        "assign",
        [fleet.keys.state, fleet.keys.lanes],
        [lane, expected, token, provider, epoch, now_ms(), failures],
    )
    return token if done == 1 else None


def transition(
    fleet: Fleet,
    *,
    lane: int,
    token: str,
    status: LaneStatus,
    worker: str = "",
    until_ms: int = 0,
    reason: str = "",
    failures: int = -1,
    epoch: int | None = None,
) -> int:
    """1 done; 0 the producer stopped or the topic changed (lane released); -1 stale token."""
    return int(
        fleet.script(
            "transition",
            [fleet.keys.state, fleet.keys.lanes],
            [
                lane,
                token,
                status.value,
                worker,
                now_ms(),
                until_ms,
                reason,
                failures,
                "" if epoch is None else epoch,
            ],
        )
    )


def dispatch(
    fleet: Fleet,
    dispatcher: Dispatcher,
    view: FleetView,
    *,
    lane: int,
    expected: str,
    failures: int = -1,
    adaptive: bool = False,
    rng: random.Random | None = None,
) -> bool:
    """Choose a provider and send the lane's next cycle. False when nothing was sent."""
    try:
        provider = choose_provider(view, adaptive=adaptive, rng=rng)
    except NoUsableProviderError as exc:
        if expected:
            transition(
                fleet,
                lane=lane,
                token=expected,
                status=LaneStatus.WAITING,
                until_ms=view.now_ms + 1000,
                reason=f"{WAIT_NO_PROVIDER}: {exc}",
            )
        return False
    token = assign(
        fleet, lane=lane, expected=expected, provider=provider, epoch=view.state.epoch, failures=failures
    )
    if token is None:
        return False
    dispatcher.send(provider=provider, epoch=view.state.epoch, lane=lane, token=token)
    return True


def release(fleet: Fleet, *, lane: int, token: str) -> None:
    """Remove the lane if ``token`` is current (stopped, topic changed, concurrency lowered).

    This is the assign script's release path (an epoch that never matches): when the
    producer is stopping and no lane is busy any more, the phase becomes Stopped.
    """
    assign(fleet, lane=lane, expected=token, provider="", epoch=-1)


def settle_stop(fleet: Fleet) -> None:
    """Stopping with no lane left: become Stopped."""
    release(fleet, lane=-1, token="")


@dataclass
class ReconcileReport:
    dispatched: list[int] = field(default_factory=list)
    released: list[int] = field(default_factory=list)


def _lost(lane: LaneRecord, view: FleetView, live_workers: set[str], queued_timeout_ms: int) -> bool:
    if lane.status in (LaneStatus.RESERVED, LaneStatus.RUNNING):
        return lane.worker not in live_workers
    if lane.status is LaneStatus.QUEUED:
        return view.now_ms - lane.since_ms > queued_timeout_ms
    return False


def _ready(lane: LaneRecord, view: FleetView) -> bool:
    """A waiting lane whose reason has cleared."""
    if lane.status is not LaneStatus.WAITING or lane.until_ms > view.now_ms:
        return False
    if lane.reason.startswith(WAIT_BACKLOG):
        return view.backlog < view.state.max_backlog
    return bool(eligible_providers(view))


def reconcile(
    fleet: Fleet,
    dispatcher: Dispatcher,
    *,
    queued_timeout_ms: int,
    adaptive: bool = False,
    rng: random.Random | None = None,
) -> ReconcileReport:
    """Restore the fleet's lanes (idempotent: compare-and-set on every lane)."""
    report = ReconcileReport()
    view = fleet.view(with_stats=adaptive)
    state = view.state
    live = fleet.live_workers()
    if state.phase is Phase.STOPPING:
        for index, held in view.lanes.items():
            if held.status not in (LaneStatus.RESERVED, LaneStatus.RUNNING) or held.worker not in live:
                release(fleet, lane=index, token=held.token)
                report.released.append(index)
        if not view.lanes:
            settle_stop(fleet)
        return report
    if state.phase is not Phase.RUNNING:
        return report
    for index in range(state.concurrency):
        current = view.lanes.get(index)
        if current is not None and not (
            _lost(current, view, live, queued_timeout_ms) or _ready(current, view)
        ):
            continue
        if dispatch(
            fleet,
            dispatcher,
            view,
            lane=index,
            expected=current.token if current else "",
            adaptive=adaptive,
            rng=rng,
        ):
            report.dispatched.append(index)
    extra = [
        str(index)
        for index, lane in view.lanes.items()
        if index >= state.concurrency and lane.status in (LaneStatus.WAITING, LaneStatus.QUEUED)
    ]
    if extra:  # concurrency was lowered: their messages become stale
        with redis_errors("release lanes"):
            fleet.redis.hdel(fleet.keys.lanes, *extra)
        report.released.extend(int(i) for i in extra)
    if report.dispatched:
        log.info("reconcile dispatched lanes %s", report.dispatched)
    return report
