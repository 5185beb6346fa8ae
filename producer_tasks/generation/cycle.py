"""One generation cycle: the eight steps of a cycle, distributed.

1. the lane's provider was chosen at dispatch (weighted, healthy, served, not cooling);
2. this runs as a task on that provider's queue; it claims its lane in the round trip of
   its fleet view (atomically: stale token or topic, Stop, budget, provider Unhealthy or
   cooling), then checks the backlog, the provider's weight and workers, the rate limit;
3. build the prompt; 4. call the provider (SDK retries off, our errors);
5. parse; 6. bloom check-and-add when enabled; 7. append the batch to the stream
   (only if the topic is unchanged); 8. record statistics, health and history, then
   dispatch the lane's next cycle, or let it wait (backoff, backlog, no provider).
Lane rules are ``producer_tasks.lanes``; storage is ``producer_tasks.state``.
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass, field, replace
from enum import StrEnum

from producer_tasks.clock import now_ms
from producer_tasks.errors import NoUsableProviderError, ProviderError, RateLimitedError, StateError
from producer_tasks.generation.parsing import parse_response
from producer_tasks.generation.prompt import avoid_section, build_prompt, facets_prompt
from producer_tasks.generation.providers import GenerationRequest, generate
from producer_tasks.health import backoff_s
from producer_tasks.lanes import (
    WAIT_BACKOFF,
    WAIT_NO_PROVIDER,
    WAIT_RATE_LIMIT,
    PlannedDispatch,
    backlog_full,
    eligible_providers,
)
from producer_tasks.records import BatchRecord, LLMResponse, MetadataRecord, Phase, ProviderStatus
from producer_tasks.runtime import Runtime
from producer_tasks.state import bloom, control, novelty, outcomes, ratelimit, stream
from producer_tasks.state.fleet import FleetView
from producer_tasks.state.scripts import Acknowledgement, CommandCall, ScriptCall

log = logging.getLogger(__name__)
BUDGET_SPENT = -2  # the claim's answer when PRODUCER_BUDGET_USD is reached
PROVIDER_DOWN = -3  # the claim's answer when the provider went Unhealthy or is cooling down
PERSIST_DEADLINE_S = 120.0  # how long a paid-for response waits for Redis before the cycle gives up
PERSIST_BACKOFF_MAX_S = 5.0


class Outcome(StrEnum):
    DELIVERED = "delivered"  # a batch was appended to the stream
    EMPTY = "empty"  # the call succeeded but nothing new was left
    DISCARDED = "discarded"  # the topic changed during the call: output dropped
    STALE = "stale"  # not this lane's current token: nothing done
    STOPPED = "stopped"  # the producer is stopping or the topic changed: nothing started
    WAITING = "waiting"  # the lane waits (backlog, rate limit, no provider)
    REDIRECTED = "redirected"  # the provider became unusable: re-dispatched elsewhere
    FAILED = "failed"  # the provider call failed; the lane backs off


def _park(rt: Runtime, *, lane: int, token: str, reason: str, wait_ms: int, failures: int = -1) -> Outcome:
    parked = rt.lanes.park(lane=lane, token=token, reason=reason, wait_ms=wait_ms, failures=failures)
    return Outcome.WAITING if parked else Outcome.STOPPED


def _claimed(
    rt: Runtime, view: FleetView, claimed: int, *, provider: str, epoch: int, lane: int, token: str
) -> Outcome | None:
    """After the claim (pipelined with the view): None when the cycle may call, else its
    Outcome. The claim checked the token, phase, epoch, budget and the provider's health
    atomically; the view's own rules follow (a lane beyond the concurrency, the backlog, a
    provider without weight or worker) and move the lane on when they fail."""
    if claimed == -1:
        return Outcome.STALE
    if claimed == 0:  # Stop or a new topic arrived: the claim released the lane
        return Outcome.STOPPED
    if claimed == BUDGET_SPENT:  # PRODUCER_BUDGET_USD reached: no new call, the fleet stops
        log.warning("budget of US$%s reached: stopping the producer", rt.settings.budget_usd)
        control.stop(rt.fleet)
        rt.lanes.release(lane=lane, token=token)
        return Outcome.STOPPED
    stopped = _preflight(rt, view, provider=provider, epoch=epoch, lane=lane, token=token)
    if stopped is None and claimed == PROVIDER_DOWN:  # usable again a moment later: next round
        return _park(rt, lane=lane, token=token, reason=f"{WAIT_NO_PROVIDER}: {provider} unusable", wait_ms=0)
    return stopped


def _preflight(
    rt: Runtime, view: FleetView, *, provider: str, epoch: int, lane: int, token: str
) -> Outcome | None:
    """The view's checks before any token is spent; an Outcome when the cycle must not call."""
    state = view.state
    current = view.lanes.get(lane)
    if current is None or current.token != token:
        return Outcome.STALE
    if state.phase is not Phase.RUNNING or state.epoch != epoch or lane >= state.concurrency:
        rt.lanes.release(lane=lane, token=token)
        return Outcome.STOPPED
    full = backlog_full(view)
    if full is not None:
        return _park(rt, lane=lane, token=token, reason=full, wait_ms=0)
    if provider not in eligible_providers(view):
        try:
            other = rt.lanes.choose(view)
        except NoUsableProviderError as exc:
            return _park(rt, lane=lane, token=token, reason=f"{WAIT_NO_PROVIDER}: {exc}", wait_ms=1000)
        rt.lanes.send(lane=lane, expected=token, provider=other, epoch=epoch)
        return Outcome.REDIRECTED
    return None


def run_cycle(
    rt: Runtime,
    *,
    provider: str,
    epoch: int,
    lane: int,
    token: str,
    worker: str,
    acknowledgement: Acknowledgement | None = None,
) -> Outcome:
    """One cycle; ``acknowledgement``: of the cycle's own message, run in the delivery's round
    trip when the cycle gets that far (else the broker's acknowledgement does it)."""
    fleet, settings = rt.fleet, rt.settings
    steering = settings.prompt_strategy == "novelty"  # its record is read with the view
    claim = rt.lanes.claim_call(lane=lane, token=token, worker=worker, epoch=epoch, provider=provider)
    reads = novelty.read_calls(fleet, known=settings.avoid_tokens > 0) if steering else []
    view = fleet.view(lane=lane, with_stats=rt.adaptive, extra=[claim, *reads])  # one round trip
    stopped = _claimed(rt, view, int(view.extra[0]), provider=provider, epoch=epoch, lane=lane, token=token)
    if stopped is not None:
        return stopped
    state = view.state
    generation = state.generation
    steer = (
        _steering(rt, epoch, novelty.parse(view.extra[1:]), batch_size=generation.batch_size)
        if steering
        else Steering()
    )
    if steer.ask_facets:
        prompt = facets_prompt(state.topic, settings.facets)
    else:
        prompt = build_prompt(
            state.prompt,
            topic=state.topic,
            batch_size=generation.batch_size,
            avoid=steer.avoid,
            facet=steer.facet,
        )
    estimated = ratelimit.estimate_tokens(prompt, generation.max_tokens)
    wait_ms = ratelimit.acquire(fleet, settings, provider, tokens=estimated)
    if wait_ms > 0:
        return _park(rt, lane=lane, token=token, reason=f"{WAIT_RATE_LIMIT} ({provider})", wait_ms=wait_ms)
    failures = view.lanes[lane].failures
    request = GenerationRequest(
        prompt=prompt,
        topic=state.topic,
        temperature=generation.temperature,
        max_tokens=generation.max_tokens,
        batch_size=settings.facets if steer.ask_facets else generation.batch_size,
    )
    try:
        response = generate(rt.clients, provider, request)
    except ProviderError as exc:
        return _failed(rt, exc, provider=provider, prompt=prompt, lane=lane, token=token, failures=failures)
    try:
        ratelimit.correct(fleet, settings, provider, estimated=estimated, used=response.tokens_used)
    except StateError as exc:  # only a correction of the estimate: never worth a second call
        log.warning("token bucket of %s not corrected: %s", provider, exc)
    candidates = parse_response(
        response.content,
        batch_size=request.batch_size,
        max_response_chars=settings.max_response_chars,
        max_attribute_chars=settings.max_attribute_chars,
    )
    if steer.ask_facets:  # the answer is the topic's facets, not attributes
        steer = replace(steer, proposed=candidates)
        candidates = []
    return _deliver(
        rt,
        view,
        response,
        candidates,
        provider=provider,
        prompt=prompt,
        lane=lane,
        token=token,
        steer=steer,
        acknowledgement=acknowledgement,
    )


@dataclass(frozen=True)
class Steering:
    """How a novelty prompt steers away from what is known (all empty: the fixed prompt)."""

    avoid: str = ""  # the "already known" section
    facet: str = ""  # the facet the prompt focuses on
    ask_facets: bool = False  # this cycle asks the model for the topic's facets instead
    proposed: list[str] = field(default_factory=list)  # the facets it answered


def _steering(rt: Runtime, epoch: int, record: novelty.Record, *, batch_size: int) -> Steering:
    settings = rt.settings
    try:
        if settings.facets and not record.facets and novelty.ask_for_facets(rt.fleet, epoch):
            return Steering(ask_facets=True)
    except StateError as exc:  # a prompt without facets is still a good prompt
        log.warning("facets not asked for: %s", exc)
    return Steering(
        avoid=avoid_section(record.most_repeated, record.others, budget_tokens=settings.avoid_tokens)
        if settings.avoid_tokens > 0
        else "",
        facet=novelty.choose_facet(record.facets, batch_size=batch_size, rng=rt.rng),
    )


def _deliver(
    rt: Runtime,
    view: FleetView,
    response: LLMResponse,
    candidates: list[str],
    *,
    provider: str,
    prompt: str,
    lane: int,
    token: str,
    steer: Steering,
    acknowledgement: Acknowledgement | None,
) -> Outcome:
    """Steps 6-8 for a response that was paid for: kept through a Redis outage (retried until
    Redis answers, up to ``PERSIST_DEADLINE_S``), never bought twice; the lane token makes a
    resent delivery append and count once, and journals the batch between the bloom check
    and the append."""
    batch = BatchRecord(
        epoch=view.state.epoch,
        topic=view.state.topic,
        attributes=candidates,
        provider_used=provider,
        metadata=MetadataRecord(
            response_time_ms=round(response.response_time_ms),
            prompt_tokens=response.prompt_tokens,
            completion_tokens=response.completion_tokens,
            provider_status=ProviderStatus.HEALTHY,  # a success makes it Healthy (health rules)
        ),
    )
    checked: bloom.FilterResult | None = None
    planned = rt.lanes.plan_next(view, lane=lane, token=token)  # assigned in the same round trip
    deadline = time.monotonic() + PERSIST_DEADLINE_S
    for attempt in itertools.count(1):
        try:
            if checked is None and rt.settings.bloom_filter and candidates:
                journal = bloom.Journal(token, batch.epoch, stream.journal_entry(batch.model_dump_json()))
                checked = bloom.check_and_add(
                    rt.fleet, rt.settings, candidates, journal=journal, defer_counters=True
                )
            results, passed = _persist(
                rt,
                response,
                batch,
                checked,
                provider=provider,
                prompt=prompt,
                token=token,
                steer=steer,
                planned=planned,
                acknowledgement=acknowledgement,
            )
            break
        except StateError as exc:
            if time.monotonic() >= deadline:
                raise
            delay = backoff_s(attempt, base_s=0.25, max_s=PERSIST_BACKOFF_MAX_S, rng=rt.rng)
            log.warning("cycle of lane %d: %s; keeping the response, retrying in %.1fs", lane, exc, delay)
            time.sleep(delay)
    outcome = Outcome.EMPTY
    if passed:
        outcome = Outcome.DELIVERED if results[1] else Outcome.DISCARDED
        if outcome is Outcome.DISCARDED:
            log.info("topic changed during the call: batch of %d dropped", len(passed))
    if planned is None:
        rt.lanes.next(view, lane=lane, token=token)  # released, parked or waiting: its own round trip
    else:
        rt.lanes.send_planned(planned, results[-1])
    return outcome


def _persist(
    rt: Runtime,
    response: LLMResponse,
    batch: BatchRecord,
    checked: bloom.FilterResult | None,
    *,
    provider: str,
    prompt: str,
    token: str,
    steer: Steering,
    planned: PlannedDispatch | None,
    acknowledgement: Acknowledgement | None,
) -> tuple[list[object], list[str]]:
    """Health, statistics, history, the bloom counters, the batch, the lane's next token and
    the acknowledgement of this cycle's message in one round trip."""
    fleet = rt.fleet
    candidates = batch.attributes
    if checked is not None:
        batch = batch.model_copy(update={"attributes": checked.passed, "bloom": checked.counts})
    calls: list[ScriptCall | CommandCall] = [
        outcomes.outcome_call(
            fleet,
            rt.settings,
            provider,
            success=True,
            response=response,
            candidates=len(candidates),
            unique=len(batch.attributes),
            attempt=outcomes.make_attempt(
                provider=provider, prompt=prompt, response=response, candidates=batch.attributes, success=True
            )
            if rt.history.due(provider)
            else None,
            call_id=token,
        )
    ]
    if batch.attributes or checked is not None:
        calls.append(
            stream.append_call(
                fleet,
                batch,
                call_id=token,
                checked=checked.checked if checked else 0,
                filtered=checked.filtered if checked else 0,
            )
        )
    if rt.settings.prompt_strategy == "novelty":  # what the next prompts steer away from
        listing = rt.settings.avoid_tokens > 0  # the known items are kept only for an avoid list
        passed = set(batch.attributes) if listing and checked is not None else None
        calls.append(
            novelty.remember_call(
                fleet,
                epoch=batch.epoch,
                delivered=batch.attributes if listing else [],
                repeated=[c for c in candidates if c not in passed] if passed is not None else [],
                facet=steer.facet,
                brought=len(batch.attributes),
                proposed=steer.proposed,
            )
        )
    if acknowledgement is not None:
        calls.extend(acknowledgement.calls)
    if planned is not None:  # last: the lane's next token, once this cycle's outcome is recorded
        calls.append(planned.call)
    results = fleet.run(*calls)
    if acknowledgement is not None:
        acknowledgement.done()
    return results, batch.attributes


def _failed(
    rt: Runtime, exc: ProviderError, *, provider: str, prompt: str, lane: int, token: str, failures: int
) -> Outcome:
    settings = rt.settings
    delay_s = backoff_s(
        failures + 1, base_s=settings.backoff_base_s, max_s=settings.backoff_max_s, rng=rt.rng
    )
    cooldown = 0
    if isinstance(exc, RateLimitedError):
        pause_s = exc.retry_after_s if exc.retry_after_s is not None else delay_s
        cooldown = now_ms() + round(pause_s * 1000)
    log.warning("cycle on %s failed: %s", provider, exc)
    outcomes.record_outcome(
        rt.fleet,
        settings,
        provider,
        success=False,
        error=str(exc),
        cooldown_until_ms=cooldown,
        rate_limited=isinstance(exc, RateLimitedError),
        attempt=outcomes.make_attempt(
            provider=provider, prompt=prompt, response=None, candidates=[], success=False, error=str(exc)
        ),
    )
    _park(
        rt,
        lane=lane,
        token=token,
        reason=f"{WAIT_BACKOFF} after {type(exc).__name__}",
        wait_ms=round(delay_s * 1000),
        failures=failures + 1,
    )
    return Outcome.FAILED
