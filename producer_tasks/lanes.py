"""Generation lanes: the fleet-wide target of cycles in flight, and every rule about them.

The fleet runs ``concurrency`` lanes. Each lane is a chain of cycle tasks: a finished
cycle dispatches the lane's next cycle (``Lanes.next``) with a fresh token; only the task
holding a lane's current token may run, so a duplicate or a restored message of a lost
worker is a cheap no-op. A lane is QUEUED (message sent), RUNNING (a worker's cycle claimed
it: allowed to spend tokens) or WAITING (backlog, no provider, rate limit, backoff). The
claim is the cycle's first step, in the round trip of its fleet view: with one message
prefetched per thread a received message starts at once, so there is no separate mark
when a worker takes the message.

``Lanes.reconcile`` is the one entry point for everyone who restores lanes (a worker's
heartbeat under the fleet-wide lock, the bridge after a control message): it
re-dispatches lanes that are missing, whose worker stopped heart-beating, that waited
long enough, or whose message was lost between the lane update and the send.
The storage (Lua compare-and-set scripts) is ``producer_tasks.state``.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from producer_tasks import health
from producer_tasks.clock import now_ms
from producer_tasks.errors import NoUsableProviderError
from producer_tasks.records import LaneRecord, LaneStatus, Phase
from producer_tasks.selection import adaptive_weights, effective_weight, weighted_choice
from producer_tasks.settings import Settings
from producer_tasks.state import control
from producer_tasks.state.fleet import Fleet, FleetView, new_token
from producer_tasks.state.scripts import QueuedMessage, ScriptCall

log = logging.getLogger(__name__)

WAIT_BACKLOG = "backlog full"
WAIT_NO_PROVIDER = "no usable provider"
WAIT_RATE_LIMIT = "rate limited"
WAIT_BACKOFF = "backoff"
WAIT_QUOTA = "count covered by the calls in flight (producer run --count)"
QUOTA_PAUSE_MS = 200  # parked lanes look again once calls in flight may have ended
NO_PROVIDER_PAUSE_MS = 1000
BUSY_GRACE_S = 30.0  # beyond the request timeout, before a RUNNING lane counts as lost
BUSY = (LaneStatus.RESERVED, LaneStatus.RUNNING)
CLAIM_STALE = -1  # the claim's answers (state/lua/transition.lua): not the lane's current token,
CLAIM_STOPPED = 0  # Stop or a new topic (the claim released the lane),
BUDGET_SPENT = -2  # PRODUCER_BUDGET_USD reached,
PROVIDER_DOWN = -3  # the provider went Unhealthy or is cooling down,
QUOTA_REACHED = -4  # the calls in flight may bring all that `producer run --count` still needs


class Refusal(StrEnum):
    """Why a cycle that claimed its lane must not call its provider (``Lanes.admit``)."""

    STALE = "stale"  # not this lane's current token: nothing done
    STOPPED = "stopped"  # the producer is stopping or the topic changed: lane released
    WAITING = "waiting"  # the lane waits (backlog, no provider)
    REDIRECTED = "redirected"  # the provider became unusable: re-dispatched elsewhere


class Dispatcher(Protocol):
    """Sends one cycle message to a provider's queue, or prepares it for the assign script
    to push (``prepare``; None: ``send`` it once the token is assigned)."""

    def send(self, *, provider: str, epoch: int, lane: int, token: str) -> None: ...

    def prepare(self, *, provider: str, epoch: int, lane: int, token: str) -> QueuedMessage | None: ...


# --- selection over a snapshot (pure) ---------------------------------------------------


def eligible_providers(view: FleetView) -> list[str]:
    """Weight above 0, served by a live worker, not Unhealthy, not cooling down."""
    weights = view.state.weights
    return [
        p
        for p in view.health  # the fleet's providers, in order
        if effective_weight(weights.get(p)) > 0
        and p in view.live_queues
        and health.is_usable(view.health[p], now_ms=view.now_ms)
    ]


def no_provider_reason(view: FleetView) -> str:
    """Why no provider can take a cycle, one clause per weighted provider."""
    reasons = []
    for p in view.health:
        if effective_weight(view.state.weights.get(p)) <= 0:
            continue
        why = health.unusable_reason(view.health[p], now_ms=view.now_ms)
        if p not in view.live_queues:
            why = f"no live worker consumes queue {p!r}"
        reasons.append(f"{p}: {why or 'usable'}")
    return "; ".join(reasons) or "no provider has a weight above 0"


def selection_weights(view: FleetView, *, adaptive: bool, per_dollar: bool = False) -> dict[str, float]:
    weights = dict(view.state.weights)
    if not adaptive or not view.stats:
        return weights
    cost = None
    if per_dollar:
        cost = {p: s.cost_usd / s.successful_requests for p, s in view.stats.items() if s.successful_requests}
    return adaptive_weights(
        weights,
        novelty={p: s.ema_novelty for p, s in view.stats.items()},
        success={p: s.ema_success for p, s in view.stats.items()},
        cost_per_request=cost,
    )


def choose_provider(
    view: FleetView, *, adaptive: bool = False, per_dollar: bool = False, rng: random.Random | None = None
) -> str:
    eligible = eligible_providers(view)
    if not eligible:
        raise NoUsableProviderError(no_provider_reason(view))
    return weighted_choice(
        eligible, selection_weights(view, adaptive=adaptive, per_dollar=per_dollar), rng=rng
    )


def queued_timeout_ms(settings: Settings) -> int:
    """How long a QUEUED lane may wait for a worker before its message counts as lost (e.g.
    prefetched by a worker that was killed). Short on purpose: the re-dispatch gives the lane a
    new token, so if the old message was only slow it becomes a cheap no-op."""
    return round(settings.queued_timeout_s * 1000)


def backlog_full(view: FleetView) -> str | None:
    """The waiting reason when the stream holds too many batches, else None."""
    if view.backlog >= view.state.max_backlog:
        return f"{WAIT_BACKLOG} ({view.backlog} >= {view.state.max_backlog})"
    return None


def lane_ends(view: FleetView, lane: int) -> bool:
    """After its cycle the lane is released: the producer is not running, or the lane is
    beyond the concurrency."""
    return view.state.phase is not Phase.RUNNING or lane >= view.state.concurrency


@dataclass(frozen=True)
class PlannedDispatch:
    lane: int
    provider: str
    epoch: int
    token: str
    call: ScriptCall
    pushed: bool  # the assign call pushes the message itself


@dataclass
class ReconcileReport:
    dispatched: list[int] = field(default_factory=list)
    released: list[int] = field(default_factory=list)


class Lanes:
    """Lane transitions of one process: dispatch, park, release, reconcile."""

    def __init__(
        self, fleet: Fleet, dispatcher: Dispatcher, settings: Settings, *, rng: random.Random | None = None
    ) -> None:
        self.fleet = fleet
        self.dispatcher = dispatcher
        self.adaptive = settings.selection in ("adaptive", "adaptive-cost")
        self.per_dollar = settings.selection == "adaptive-cost"
        self.queued_timeout_ms = queued_timeout_ms(settings)
        self.busy_limit_ms = round((settings.request_timeout_s + BUSY_GRACE_S) * 1000)
        self.rng = rng or random.Random()
        self.budget_usd = settings.budget_usd

    # --- one lane ---------------------------------------------------------------------
    def choose(self, view: FleetView) -> str:
        """A provider for a lane's next cycle, by this process's selection settings."""
        return choose_provider(view, adaptive=self.adaptive, per_dollar=self.per_dollar, rng=self.rng)

    def dispatch(self, view: FleetView, *, lane: int, expected: str, failures: int = -1) -> bool:
        """Choose a provider and send the lane's next cycle. False when nothing was sent."""
        try:
            provider = self.choose(view)
        except NoUsableProviderError as exc:
            if expected:
                self.fleet.transition(
                    lane=lane,
                    token=expected,
                    status=LaneStatus.WAITING,
                    until_ms=view.now_ms + NO_PROVIDER_PAUSE_MS,
                    reason=f"{WAIT_NO_PROVIDER}: {exc}",
                )
            return False
        return self.send(
            lane=lane, expected=expected, provider=provider, epoch=view.state.epoch, failures=failures
        )

    def send(self, *, lane: int, expected: str, provider: str, epoch: int, failures: int = -1) -> bool:
        """Give the lane a new token on ``provider`` and send its message."""
        planned = self.plan(lane=lane, expected=expected, provider=provider, epoch=epoch, failures=failures)
        assigned = self.fleet.run(planned.call)[0]
        self.send_planned(planned, assigned)
        return bool(assigned == 1)

    def plan(self, *, lane: int, expected: str, provider: str, epoch: int, failures: int) -> PlannedDispatch:
        """The assign call giving the lane a new token (if ``expected`` is still its token),
        with the cycle message the script pushes when the broker is the fleet's Redis."""
        token = new_token()
        message = self.dispatcher.prepare(provider=provider, epoch=epoch, lane=lane, token=token)
        _, call = self.fleet.assign_call(
            lane=lane, expected=expected, provider=provider, epoch=epoch, failures=failures, token=token,
            message=message,
        )  # fmt: skip
        return PlannedDispatch(lane, provider, epoch, token, call, pushed=message is not None)

    def plan_next(self, view: FleetView, *, lane: int, token: str) -> PlannedDispatch | None:
        """The lane's next cycle, when ``next`` would dispatch it: its provider, token and the
        assign call, to run in the cycle's delivery round trip (``send_planned`` then sends
        it). None when ``next`` would release or park the lane instead."""
        if lane_ends(view, lane) or backlog_full(view):
            return None
        try:
            provider = self.choose(view)
        except NoUsableProviderError:
            return None
        return self.plan(lane=lane, expected=token, provider=provider, epoch=view.state.epoch, failures=0)

    def send_planned(self, planned: PlannedDispatch, assigned: object) -> None:
        """Send the planned cycle if its assign call assigned it and did not push its message
        itself (else the lane was released or its token moved on: nothing to send)."""
        if assigned == 1 and not planned.pushed:
            self.dispatcher.send(
                provider=planned.provider, epoch=planned.epoch, lane=planned.lane, token=planned.token
            )

    def claim_call(self, *, lane: int, token: str, worker: str, epoch: int, provider: str) -> ScriptCall:
        """RUNNING: the moment a cycle may spend tokens; pipelined with the cycle's view. Its
        reply: 1; 0 stopped/new topic (lane released); -1 stale; -2 the budget is spent; -3
        ``provider`` is Unhealthy or cooling; -4 the quota is reached (-1 to -4 change nothing)."""
        return self.fleet.transition_call(
            lane=lane,
            token=token,
            status=LaneStatus.RUNNING,
            worker=worker,
            epoch=epoch,
            budget_usd=self.budget_usd,
            provider=provider,
        )

    def admit(
        self, view: FleetView, claimed: int, *, provider: str, epoch: int, lane: int, token: str
    ) -> Refusal | None:
        """After the claim (pipelined with the view): None when the cycle may call, else why
        not, the lane moved on accordingly. The claim checked the token, phase, epoch, budget
        and the provider's health atomically; the view's own rules follow (a lane beyond the
        concurrency, the backlog, a provider without weight or worker)."""
        if claimed == CLAIM_STALE:
            return Refusal.STALE
        if claimed == CLAIM_STOPPED:
            return Refusal.STOPPED
        if claimed == BUDGET_SPENT:  # no new call: the fleet stops
            log.warning("budget of US$%s reached: stopping the producer", self.budget_usd)
            control.stop(self.fleet)
            self.release(lane=lane, token=token)
            return Refusal.STOPPED
        if claimed == QUOTA_REACHED:
            return self.wait(lane=lane, token=token, reason=WAIT_QUOTA, wait_ms=QUOTA_PAUSE_MS)
        refused = self._preflight(view, provider=provider, epoch=epoch, lane=lane, token=token)
        if refused is None and claimed == PROVIDER_DOWN:  # usable again a moment later: next round
            return self.wait(
                lane=lane, token=token, reason=f"{WAIT_NO_PROVIDER}: {provider} unusable", wait_ms=0
            )
        return refused

    def _preflight(
        self, view: FleetView, *, provider: str, epoch: int, lane: int, token: str
    ) -> Refusal | None:
        """The view's checks before any token is spent."""
        state, current = view.state, view.lanes.get(lane)
        if current is None or current.token != token:
            return Refusal.STALE
        if state.phase is not Phase.RUNNING or state.epoch != epoch or lane >= state.concurrency:
            self.release(lane=lane, token=token)
            return Refusal.STOPPED
        full = backlog_full(view)
        if full is not None:
            return self.wait(lane=lane, token=token, reason=full, wait_ms=0)
        if provider in eligible_providers(view):
            return None
        try:
            other = self.choose(view)
        except NoUsableProviderError as exc:
            return self.wait(lane=lane, token=token, reason=f"{WAIT_NO_PROVIDER}: {exc}", wait_ms=1000)
        self.send(lane=lane, expected=token, provider=other, epoch=epoch)
        return Refusal.REDIRECTED

    def wait(self, *, lane: int, token: str, reason: str, wait_ms: int, failures: int = -1) -> Refusal:
        """``park`` the lane: WAITING, or STOPPED when the producer stopped meanwhile."""
        parked = self.park(lane=lane, token=token, reason=reason, wait_ms=wait_ms, failures=failures)
        return Refusal.WAITING if parked else Refusal.STOPPED

    def park(self, *, lane: int, token: str, reason: str, wait_ms: int, failures: int = -1) -> bool:
        """WAITING until ``wait_ms`` from now; False when the producer stopped (lane released)."""
        done = self.fleet.transition(
            lane=lane,
            token=token,
            status=LaneStatus.WAITING,
            until_ms=now_ms() + wait_ms,
            reason=reason,
            failures=failures,
        )
        return done == 1

    def release(self, *, lane: int, token: str) -> None:
        """Remove the lane if ``token`` is current (stopped, topic changed, concurrency lowered).

        This is the assign script's release path (an epoch that never matches): when the
        producer is stopping and no lane is busy any more, the phase becomes Stopped.
        """
        self.fleet.assign(lane=lane, expected=token, provider="", epoch=-1)

    def settle_stop(self) -> None:
        """Stopping with no lane left: become Stopped."""
        self.release(lane=-1, token="")

    def next(self, view: FleetView, *, lane: int, token: str) -> None:
        """After a cycle: dispatch the lane's next one, park it (backlog), or release it.

        ``view`` is the one read before the call: the assign script re-checks the phase and
        the epoch atomically, and the next cycle's preflight re-checks backlog and health,
        so a slightly old view costs nothing but saves a round trip per cycle.
        """
        if lane_ends(view, lane):
            self.release(lane=lane, token=token)
            return
        full = backlog_full(view)
        if full is not None:
            self.park(lane=lane, token=token, reason=full, wait_ms=0, failures=0)
            return
        self.dispatch(view, lane=lane, expected=token, failures=0)

    # --- the whole fleet --------------------------------------------------------------
    def reconcile(self) -> ReconcileReport:
        """Restore the fleet's lanes (idempotent: compare-and-set on every lane)."""
        fleet = self.fleet
        report = ReconcileReport()
        view = fleet.view(with_stats=self.adaptive)
        state = view.state
        live = fleet.live_workers()
        if state.phase is Phase.STOPPING:
            for index, held in view.lanes.items():
                if held.status not in BUSY or self._lost(held, view, live):
                    self.release(lane=index, token=held.token)
                    report.released.append(index)
            if not view.lanes:
                self.settle_stop()
            return report
        if state.phase is not Phase.RUNNING:
            return report
        for index in range(state.concurrency):
            current = view.lanes.get(index)
            if current is not None and not (self._lost(current, view, live) or self._ready(current, view)):
                continue
            if self.dispatch(view, lane=index, expected=current.token if current else ""):
                report.dispatched.append(index)
        extra = [
            index
            for index, lane in view.lanes.items()
            if index >= state.concurrency and lane.status in (LaneStatus.WAITING, LaneStatus.QUEUED)
        ]
        if extra:  # concurrency was lowered: their messages become stale
            fleet.drop_lanes(extra)
            report.released.extend(extra)
        if report.dispatched:
            log.info("reconcile dispatched lanes %s", report.dispatched)
        return report

    def _lost(self, lane: LaneRecord, view: FleetView, live_workers: set[str]) -> bool:
        """A lane whose message or cycle is gone. A busy lane belongs to a worker
        *incarnation* (a restarted worker of the same name is another one) and is lost when
        that incarnation stopped heart-beating, or when it has been busy longer than a call
        can take (its message was rejected during a Redis outage, its thread hangs)."""
        if lane.status in BUSY:
            return lane.worker not in live_workers or view.now_ms - lane.since_ms > self.busy_limit_ms
        if lane.status is LaneStatus.QUEUED:
            return view.now_ms - lane.since_ms > self.queued_timeout_ms
        return False

    @staticmethod
    def _ready(lane: LaneRecord, view: FleetView) -> bool:
        """A waiting lane whose reason has cleared."""
        if lane.status is not LaneStatus.WAITING or lane.until_ms > view.now_ms:
            return False
        if lane.reason.startswith(WAIT_BACKLOG):
            return view.backlog < view.state.max_backlog
        return bool(eligible_providers(view))
