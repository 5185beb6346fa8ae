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
from producer_tasks.errors import ConfigurationError, ProviderError, RateLimitedError, StateError
from producer_tasks.generation import strategy
from producer_tasks.generation.parsing import parse_response
from producer_tasks.generation.prompt import avoid_section, build_prompt, facets_prompt
from producer_tasks.generation.providers import GenerationRequest, generate
from producer_tasks.generation.strategy import Strategy
from producer_tasks.health import backoff_s
from producer_tasks.lanes import WAIT_BACKOFF, WAIT_RATE_LIMIT, PlannedDispatch
from producer_tasks.records import BatchRecord, LLMResponse, MetadataRecord, ProviderStatus, TopicState
from producer_tasks.runtime import Runtime
from producer_tasks.state import bloom, novelty, outcomes, ratelimit, stream
from producer_tasks.state.fleet import FleetView
from producer_tasks.state.scripts import Acknowledgement, CommandCall, ScriptCall

log = logging.getLogger(__name__)
PERSIST_DEADLINE_S = 120.0  # how long a paid-for response waits for Redis before the cycle gives up
PERSIST_BACKOFF_MAX_S = 5.0
PROMPT_PAUSE_MS = 5000  # a prompt over this worker's PRODUCER_MAX_PROMPT_CHARS: the lane waits


class Outcome(StrEnum):
    DELIVERED = "delivered"  # a batch was appended to the stream
    EMPTY = "empty"  # the call succeeded but nothing new was left
    DISCARDED = "discarded"  # the topic changed during the call: output dropped
    STALE = "stale"  # not this lane's current token: nothing done
    STOPPED = "stopped"  # the producer is stopping or the topic changed: nothing started
    WAITING = "waiting"  # the lane waits (backlog, rate limit, no provider)
    REDIRECTED = "redirected"  # the provider became unusable: re-dispatched elsewhere
    FAILED = "failed"  # the provider call failed; the lane backs off


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
    steering = rt.strategies != (Strategy.FIXED,)  # its record is read with the view
    claim = rt.lanes.claim_call(lane=lane, token=token, worker=worker, epoch=epoch, provider=provider)
    reads = novelty.read_calls(fleet, known=rt.lists_known) if steering else []
    view = fleet.view(lane=lane, with_stats=rt.adaptive, extra=[claim, *reads])  # one round trip
    refused = rt.lanes.admit(view, int(view.extra[0]), provider=provider, epoch=epoch, lane=lane, token=token)
    if refused is not None:
        return Outcome(refused.value)
    batch_size = view.state.generation.batch_size
    steer = (
        _steering(rt, epoch, novelty.parse(view.extra[1:]), batch_size=batch_size, provider=provider)
        if steering
        else Steering(strategy=Strategy.FIXED)
    )
    try:
        request = _request(view.state, steer, facets=settings.facets, max_chars=settings.max_prompt_chars)
    except ConfigurationError as exc:  # a worker whose cap is below the bridge's: nothing is sent
        return Outcome(rt.lanes.wait(lane=lane, token=token, reason=str(exc), wait_ms=PROMPT_PAUSE_MS))
    estimated = ratelimit.estimate_tokens(request.prompt, request.max_tokens)
    wait_ms = ratelimit.acquire(fleet, settings, provider, tokens=estimated)
    if wait_ms > 0:
        return Outcome(
            rt.lanes.wait(lane=lane, token=token, reason=f"{WAIT_RATE_LIMIT} ({provider})", wait_ms=wait_ms)
        )
    try:
        response = generate(rt.clients, provider, request)
    except ProviderError as exc:
        failures = view.lanes[lane].failures
        return _failed(
            rt, exc, provider=provider, prompt=request.prompt, lane=lane, token=token, failures=failures
        )
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
        steer, candidates = replace(steer, proposed=candidates), []
    delivery = Delivery(provider=provider, prompt=request.prompt, lane=lane, token=token, steer=steer)
    return _deliver(rt, view, response, candidates, delivery, acknowledgement=acknowledgement)


def _request(state: TopicState, steer: Steering, *, facets: int, max_chars: int) -> GenerationRequest:
    """The call this cycle makes: the topic's prompt (steered), or the request for its facets."""
    generation = state.generation
    if steer.ask_facets:
        prompt = facets_prompt(state.topic, facets)
    else:
        prompt = build_prompt(
            state.prompt,
            topic=state.topic,
            batch_size=generation.batch_size,
            avoid=steer.avoid,
            facet=steer.facet,
            max_chars=max_chars,
        )
    return GenerationRequest(
        prompt=prompt,
        topic=state.topic,
        temperature=generation.temperature,
        max_tokens=generation.max_tokens,
        batch_size=facets if steer.ask_facets else generation.batch_size,
    )


@dataclass(frozen=True)
class Steering:
    """How a novelty prompt steers away from what is known (all empty: the fixed prompt)."""

    strategy: str = ""  # the prompt strategy it ran ("": the cycle that asks for the facets)
    avoid: str = ""  # the "already known" section
    facet: str = ""  # the facet the prompt focuses on
    ask_facets: bool = False  # this cycle asks the model for the topic's facets instead
    proposed: list[str] = field(default_factory=list)  # the facets it answered


@dataclass(frozen=True)
class Delivery:
    """What a paid-for response is delivered as: whose call, which lane, how it was steered."""

    provider: str
    prompt: str
    lane: int
    token: str
    steer: Steering


def _steering(rt: Runtime, epoch: int, record: novelty.Record, *, batch_size: int, provider: str) -> Steering:
    """The strategy this cycle runs (drawn from what each brought on ``provider``, when
    adaptive), and what it puts in the prompt."""
    settings = rt.settings
    chosen = strategy.choose(
        rt.strategies,
        strategy.arms(record.strategies, provider),
        rt.rng,
        per_call=strategy.recent_cost_per_call(record.strategies, provider),
    )
    shape = strategy.plan(chosen, settings)
    if shape.facets and not record.facets:
        try:
            if novelty.ask_for_facets(rt.fleet, epoch):
                return Steering(ask_facets=True)
        except StateError as exc:  # a prompt without facets is still a good prompt
            log.warning("facets not asked for: %s", exc)
        # not known yet (another cycle is asking): this one runs, and counts, without them
        chosen = Strategy.AVOID if shape.avoid_tokens else Strategy.FIXED
    avoid = ""
    if shape.avoid_tokens > 0:
        avoid = avoid_section(record.most_repeated, record.others, budget_tokens=shape.avoid_tokens)
    facet = novelty.choose_facet(record.facets, batch_size=batch_size, rng=rt.rng) if shape.facets else ""
    return Steering(strategy=chosen, avoid=avoid, facet=facet)


def _deliver(
    rt: Runtime,
    view: FleetView,
    response: LLMResponse,
    candidates: list[str],
    delivery: Delivery,
    *,
    acknowledgement: Acknowledgement | None,
) -> Outcome:
    """Steps 6-8 for a response that was paid for: kept through a Redis outage (retried until
    Redis answers, up to ``PERSIST_DEADLINE_S``), never bought twice; the lane token makes a
    resent delivery append and count once, and journals the batch between the bloom check
    and the append."""
    lane, token = delivery.lane, delivery.token
    batch = _batch(view, response, candidates, provider=delivery.provider)
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
                rt, response, batch, checked, delivery, planned=planned, acknowledgement=acknowledgement
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


def _batch(view: FleetView, response: LLMResponse, candidates: list[str], *, provider: str) -> BatchRecord:
    return BatchRecord(
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


def _persist(
    rt: Runtime,
    response: LLMResponse,
    batch: BatchRecord,
    checked: bloom.FilterResult | None,
    delivery: Delivery,
    *,
    planned: PlannedDispatch | None,
    acknowledgement: Acknowledgement | None,
) -> tuple[list[object], list[str]]:
    """Health, statistics, history, the bloom counters, the batch, the novelty record, the
    lane's next token and the acknowledgement of this cycle's message in one round trip."""
    fleet, provider = rt.fleet, delivery.provider
    candidates = batch.attributes
    if checked is not None:
        batch = batch.model_copy(update={"attributes": checked.passed, "bloom": checked.counts})
    attempt = None
    if rt.history.due(provider):
        attempt = outcomes.make_attempt(
            provider=provider,
            prompt=delivery.prompt,
            response=response,
            candidates=batch.attributes,
            success=True,
        )
    calls: list[ScriptCall | CommandCall] = [
        outcomes.outcome_call(
            fleet,
            rt.settings,
            provider,
            success=True,
            response=response,
            candidates=len(candidates),
            unique=len(batch.attributes),
            attempt=attempt,
            call_id=delivery.token,
        )
    ]
    if batch.attributes or checked is not None:
        calls.append(
            stream.append_call(
                fleet,
                batch,
                call_id=delivery.token,
                checked=checked.checked if checked else 0,
                filtered=checked.filtered if checked else 0,
            )
        )
    # what steers the next prompts, and what this cycle's strategy brought
    calls.append(
        _remember_call(rt, response, batch=batch, candidates=candidates, checked=checked, delivery=delivery)
    )
    if acknowledgement is not None:
        calls.extend(acknowledgement.calls)
    if planned is not None:  # last: the lane's next token, once this cycle's outcome is recorded
        calls.append(planned.call)
    results = fleet.run(*calls)
    if acknowledgement is not None:
        acknowledgement.done()
    return results, batch.attributes


def _remember_call(
    rt: Runtime,
    response: LLMResponse,
    *,
    batch: BatchRecord,
    candidates: list[str],
    checked: bloom.FilterResult | None,
    delivery: Delivery,
) -> ScriptCall:
    """The novelty record's update: what the strategy and the facet brought, and (for avoid
    lists) the items delivered and the candidates the bloom filter knew already."""
    settings, steer = rt.settings, delivery.steer
    listing = rt.lists_known  # the known items are kept only for avoid lists
    passed = set(batch.attributes) if listing and checked is not None else None
    cost = strategy.cost_units(
        settings, delivery.provider, response.prompt_tokens, response.completion_tokens
    )
    strategies = tuple(dict.fromkeys([*rt.strategies, steer.strategy]))
    return novelty.remember_call(
        rt.fleet,
        epoch=batch.epoch,
        delivered=batch.attributes if listing else [],
        repeated=[c for c in candidates if c not in passed] if passed is not None else [],
        facet=steer.facet,
        brought=len(batch.attributes),
        proposed=steer.proposed,
        spent=novelty.Spent(delivery.provider, steer.strategy, cost, tuple(s for s in strategies if s)),
    )


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
        cooldown = now_ms() + round(min(pause_s, settings.retry_after_cap_s) * 1000)  # 1e12 or inf: the cap
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
    rt.lanes.wait(
        lane=lane,
        token=token,
        reason=f"{WAIT_BACKOFF} after {type(exc).__name__}",
        wait_ms=round(delay_s * 1000),
        failures=failures + 1,
    )
    return Outcome.FAILED
