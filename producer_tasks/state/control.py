"""The control API the bridge calls: start_topic, update_configuration, stop.

An invalid configuration is rejected as a whole: nothing changes and the result says
why (the bridge answers ``ProducerStatus { Error(reason) }``). Weights for providers this
deployment has not configured are ignored, and the result says so.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import redis

from producer_tasks.clock import now_ms
from producer_tasks.errors import ConfigurationError, StateError
from producer_tasks.generation import strategy
from producer_tasks.generation.prompt import filled_length, steering_chars
from producer_tasks.printable import quoted
from producer_tasks.records import GenerationSettings, LaneRecord, LaneStatus, Phase, TopicState
from producer_tasks.settings import Settings
from producer_tasks.state import bloom
from producer_tasks.state.client import redis_errors
from producer_tasks.state.decode import parse_state
from producer_tasks.state.fleet import Fleet

log = logging.getLogger(__name__)

MAX_TEMPERATURE = 2.0
MAX_TOPIC_CHARS = 10_000
BUSY = (LaneStatus.RUNNING, LaneStatus.RESERVED)
MAX_ATTEMPTS = 20
UNKNOWN_SHOWN = 5  # unknown provider names quoted in the warning about them


@dataclass(frozen=True)
class ControlResult:
    accepted: bool
    reason: str = ""
    warnings: tuple[str, ...] = ()
    state: TopicState | None = None
    new_topic: bool = False


@dataclass(frozen=True)
class Validated:
    weights: dict[str, float] | None
    warnings: list[str] = field(default_factory=list)


def validate_weights(weights: Mapping[str, float], settings: Settings) -> Validated:
    """Reject negative or non-finite weights and configurations with nothing to run."""
    unknown: list[str] = []
    cleaned: dict[str, float] = {}
    for name, weight in weights.items():
        if not math.isfinite(weight) or weight < 0:
            raise ConfigurationError(f"weight of {quoted(name)} must be a finite number >= 0, got {weight}")
        if not settings.is_configured(name):
            unknown.append(name)
            continue
        cleaned[name] = float(weight)
    if not any(w > 0 for w in cleaned.values()):
        configured = ", ".join(settings.configured_providers)
        raise ConfigurationError(
            f"no configured provider has a weight above 0 (configured here: {configured})"
        )
    return Validated(cleaned, [_ignored(unknown)] if unknown else [])


def _ignored(names: list[str]) -> str:
    """One warning for all the names a frame weighted that this deployment does not have."""
    shown = ", ".join(quoted(name) for name in names[:UNKNOWN_SHOWN])
    more = f" and {len(names) - UNKNOWN_SHOWN} more" if len(names) > UNKNOWN_SHOWN else ""
    return f"weights ignored for {len(names)} provider(s) not configured in this deployment: {shown}{more}"


def validate_generation(
    settings: Settings, *, temperature: float, max_tokens: int, batch_size: int
) -> GenerationSettings:
    """What the orchestrator may make us spend is bounded by this deployment's settings."""
    if not math.isfinite(temperature) or not 0.0 <= temperature <= MAX_TEMPERATURE:
        raise ConfigurationError(f"temperature must be within 0..2, got {temperature}")
    if not 1 <= max_tokens <= settings.max_tokens_limit:
        raise ConfigurationError(
            f"max_tokens must be within 1..{settings.max_tokens_limit} "
            f"(PRODUCER_MAX_TOKENS_LIMIT), got {max_tokens}"
        )
    if not 1 <= batch_size <= settings.max_batch_size:
        raise ConfigurationError(
            f"batch_size must be within 1..{settings.max_batch_size} "
            f"(PRODUCER_MAX_BATCH_SIZE), got {batch_size}"
        )
    return GenerationSettings(temperature=temperature, max_tokens=max_tokens, batch_size=batch_size)


def validate_prompt(settings: Settings, prompt: str, *, topic: str, batch_size: int) -> str:
    """The template, and the prompt it becomes (filled in with the topic, and with the longest
    facet line and avoid list the novelty strategy may add), within PRODUCER_MAX_PROMPT_CHARS;
    counted, never built."""
    cap = settings.max_prompt_chars
    if len(prompt) > cap:
        raise ConfigurationError(
            f"prompt is {len(prompt)} characters, at most {cap} (PRODUCER_MAX_PROMPT_CHARS)"
        )
    most = strategy.widest(settings)  # of the strategies this deployment may use
    steering = steering_chars(
        facet_chars=settings.max_attribute_chars if most.facets else 0, avoid_tokens=most.avoid_tokens
    )
    filled = filled_length(prompt, topic=topic, batch_size=batch_size, steering_chars=steering)
    if filled > cap:
        raise ConfigurationError(
            f"prompt filled in with the topic would be {filled} characters, "
            f"at most {cap} (PRODUCER_MAX_PROMPT_CHARS)"
        )
    return prompt


def _transact(
    fleet: Fleet, change: Callable[[TopicState], tuple[TopicState, bool]]
) -> tuple[TopicState, bool]:
    """Read the state, apply ``change`` and write the result atomically (WATCH, retried).

    ``change`` returns the new state and whether it starts a new topic, in which case the
    old topic's lanes, backlog and bloom filter are dropped in the same transaction.
    """
    keys = fleet.keys
    for _ in range(MAX_ATTEMPTS):
        with redis_errors("update state"), fleet.redis.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(keys.state, keys.bloom_meta)
                current = parse_state(*pipe.hmget(keys.state, ["data", "phase", "epoch"]))
                bloom_generation = pipe.hget(keys.bloom_meta, "generation")
                state, new_topic = change(current)
                pipe.multi()
                pipe.hset(
                    keys.state,
                    mapping={
                        "data": state.model_dump_json(),
                        "phase": state.phase.value,
                        "epoch": str(state.epoch),
                        "updated_ms": str(state.updated_ms),
                    },
                )
                if new_topic:
                    pipe.delete(keys.lanes)  # lanes of the old topic are stale
                    pipe.xtrim(keys.batches, maxlen=0)  # its backlog must never reach the new topic
                    pipe.delete(keys.window)  # nor its resend window
                    pipe.delete(
                        keys.known, keys.facets, keys.facet_yield, keys.facets_asked, keys.strategy_yield
                    )  # nor its novelty record, nor what each prompt strategy brought
                    for call in bloom.drop_calls(bloom_generation, fleet):  # nor its filter
                        pipe.execute_command(*call.args)
                pipe.execute()
                return state, new_topic
            except redis.WatchError:
                continue
    raise StateError("fleet state changed concurrently too often; try again")


def start_topic(
    fleet: Fleet,
    settings: Settings,
    *,
    topic: str,
    prompt: str,
    weights: Mapping[str, float],
    temperature: float,
    max_tokens: int,
    batch_size: int,
) -> ControlResult:
    """(Re)start generation. The same topic keeps its epoch and the work in flight."""
    try:
        if not topic.strip() or len(topic) > MAX_TOPIC_CHARS:
            raise ConfigurationError(f"topic must be 1..{MAX_TOPIC_CHARS} characters")
        checked = validate_weights(weights, settings)
        generation = validate_generation(
            settings, temperature=temperature, max_tokens=max_tokens, batch_size=batch_size
        )
        validate_prompt(settings, prompt, topic=topic, batch_size=generation.batch_size)
    except ConfigurationError as exc:
        return ControlResult(False, reason=str(exc))

    def change(current: TopicState) -> tuple[TopicState, bool]:
        same = current.topic == topic and current.phase is not Phase.IDLE
        return TopicState(
            topic=topic,
            prompt=prompt,
            weights=checked.weights or {},
            generation=generation,
            epoch=current.epoch if same else current.epoch + 1,
            phase=Phase.RUNNING,
            concurrency=settings.concurrency,
            max_backlog=settings.max_backlog,
            updated_ms=now_ms(),
        ), not same

    state, new_topic = _transact(fleet, change)
    log.info("topic %r %s (epoch %d)", topic, "started" if new_topic else "updated", state.epoch)
    return ControlResult(True, warnings=tuple(checked.warnings), state=state, new_topic=new_topic)


def update_configuration(
    fleet: Fleet,
    settings: Settings,
    *,
    prompt: str | None = None,
    weights: Mapping[str, float] | None = None,
) -> ControlResult:
    """Apply each given field; None leaves it as it is (the bloom filter: ``bloom.load``)."""
    try:
        checked = validate_weights(weights, settings) if weights is not None else Validated(None)
    except ConfigurationError as exc:
        return ControlResult(False, reason=str(exc))
    update: dict[str, object] = {}
    if prompt is not None:
        update["prompt"] = prompt
    if checked.weights is not None:
        update["weights"] = checked.weights

    def change(current: TopicState) -> tuple[TopicState, bool]:
        if prompt is not None:  # filled in with the topic of the state this transaction writes
            validate_prompt(settings, prompt, topic=current.topic, batch_size=current.generation.batch_size)
        return current.model_copy(update={**update, "updated_ms": now_ms()}), False

    try:
        state, _ = _transact(fleet, change)
    except ConfigurationError as exc:  # nothing written
        return ControlResult(False, reason=str(exc))
    return ControlResult(True, warnings=tuple(checked.warnings), state=state)


def stop(fleet: Fleet) -> ControlResult:
    """No new cycle starts; cycles in flight finish and are delivered; then Stopped."""
    keys = fleet.keys
    for _ in range(MAX_ATTEMPTS):
        with redis_errors("stop"), fleet.redis.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(keys.state, keys.lanes)
                phase = pipe.hget(keys.state, "phase")
                if phase not in (Phase.RUNNING.value, Phase.STOPPING.value):
                    pipe.unwatch()
                    return ControlResult(True, state=fleet.read_state())
                lanes = {k: LaneRecord.model_validate_json(v) for k, v in pipe.hgetall(keys.lanes).items()}
                busy = [k for k, lane in lanes.items() if lane.status in BUSY]
                idle = [k for k in lanes if k not in busy]
                pipe.multi()
                if idle:
                    pipe.hdel(keys.lanes, *idle)
                next_phase = Phase.STOPPING if busy else Phase.STOPPED
                pipe.hset(keys.state, mapping={"phase": next_phase.value, "updated_ms": str(now_ms())})
                pipe.execute()
                log.info("stop: %d cycle(s) in flight finish first", len(busy))
                return ControlResult(True, state=fleet.read_state())
            except redis.WatchError:
                continue
    raise StateError("fleet state changed concurrently too often; try again")
