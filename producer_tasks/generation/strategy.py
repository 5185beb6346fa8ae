"""Prompt strategies, and the online choice among them per provider and topic.

A strategy is how a prompt steers the model: ``fixed`` (the orchestrator's template only),
``facets`` (one facet of the topic per prompt), ``avoid`` and ``avoid-long`` (a list of what
is already known, at ``PRODUCER_AVOID_TOKENS`` and ``PRODUCER_AVOID_TOKENS_LONG``) and
``facets-avoid`` (both). Which pays is a fact about each model and topic, so with
``PRODUCER_PROMPT_STRATEGY=adaptive`` (the default) every cycle draws one by Thompson
sampling from what each brought on this provider for this topic: new attributes (after the
bloom filter) per 1,000 tokens, tokens weighted by the provider's prices where they are
known (so the choice is per US$). Each cycle is compared with the provider's recent yield
whatever the strategy (``TREND_KEEP``), so a topic's saturation, which lowers every
strategy's yield, does not favour the strategies tried early. The evidence is discounted at
every cycle of the provider (``DECAY``): a strategy that was bad early returns towards its
prior (as many new attributes per call as the provider's recent calls) and is tried again as
the topic saturates or the model changes; ``EXPLORE`` of the cycles draw uniformly, a floor
under that. The counts live in Redis (``state.novelty``), updated in the delivery's round
trip and dropped with the topic.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from producer_tasks.settings import Settings


class Strategy(StrEnum):
    FIXED = "fixed"
    FACETS = "facets"
    AVOID = "avoid"
    AVOID_LONG = "avoid-long"
    FACETS_AVOID = "facets-avoid"


ADAPTIVE = "adaptive"
LEGACY = {"novelty": Strategy.FACETS_AVOID}  # its former name (facets, and a list when budgeted)
METRICS = ("cycles", "new", "cost", "expected")  # per strategy, discounted
DECAY = 0.997  # each cycle of a provider keeps this share of its strategies' evidence
TREND_KEEP = 0.95  # and this share of its recent yield, whatever the strategy
EXPLORE = 0.02  # share of cycles that draw a strategy uniformly
EVIDENCE = 1.0  # weight of one observed attribute
PRIOR_NEW, PRIOR_EXPECTED = 1.0, 1.0  # as many new attributes per call as the recent calls


@dataclass(frozen=True)
class Plan:
    """What a strategy puts in a prompt."""

    strategy: Strategy
    facets: bool
    avoid_tokens: int


def plan(strategy: Strategy, settings: Settings) -> Plan:
    facets = strategy in (Strategy.FACETS, Strategy.FACETS_AVOID) and settings.facets > 0
    avoid = {
        Strategy.AVOID: settings.avoid_tokens,
        Strategy.FACETS_AVOID: settings.avoid_tokens,
        Strategy.AVOID_LONG: settings.avoid_tokens_long,
    }.get(strategy, 0)
    return Plan(strategy, facets, avoid)


def available(settings: Settings) -> tuple[Strategy, ...]:
    """The strategies this deployment's cycles may use: all (adaptive) but those its settings
    turn off (no facets, no avoid budget), or the one it names."""
    name = settings.prompt_strategy
    if name != ADAPTIVE:
        return (LEGACY.get(name) or Strategy(name),)
    usable = []
    for strategy in Strategy:
        shape = plan(strategy, settings)
        wants_facets = strategy in (Strategy.FACETS, Strategy.FACETS_AVOID)
        wants_avoid = strategy in (Strategy.AVOID, Strategy.AVOID_LONG, Strategy.FACETS_AVOID)
        if (shape.facets or not wants_facets) and (shape.avoid_tokens > 0 or not wants_avoid):
            usable.append(strategy)
    return tuple(dict.fromkeys(usable))


def widest(settings: Settings) -> Plan:
    """The plan that adds most to a prompt, for the prompt cap (``control.validate_prompt``)."""
    plans = [plan(s, settings) for s in available(settings)]
    return Plan(Strategy.FIXED, any(p.facets for p in plans), max(p.avoid_tokens for p in plans))


@dataclass(frozen=True)
class Arm:
    """What one strategy brought on one provider for the current topic: discounted cycles,
    new attributes and cost units (tokens weighted by price), and cycles tried."""

    cycles: float = 0.0
    new: float = 0.0
    cost: float = 0.0
    expected: float = 0.0  # what the provider's recent yield would have brought for that cost
    tried: int = 0

    @property
    def relative(self) -> float:
        """New attributes over those the provider's recent yield would have brought: 1 is
        as good as the strategies it ran lately (a topic's saturation cancels out)."""
        return self.new / self.expected if self.expected else 0.0


def field_name(provider: str, strategy: str, metric: str) -> str:
    """The Redis hash field of one metric of one strategy on one provider."""
    return f"{provider}/{strategy}/{metric}"


def arms(record: Mapping[str, str], provider: str) -> dict[Strategy, Arm]:
    """The provider's strategies from the topic's hash (``field_name`` fields)."""
    found: dict[Strategy, Arm] = {}
    for strategy in Strategy:
        cycles, new, cost, expected, tried = (
            float(record.get(field_name(provider, strategy, m), 0) or 0) for m in (*METRICS, "tried")
        )
        if tried:
            found[strategy] = Arm(cycles, new, cost, expected, int(tried))
    return found


def recent_yield(record: Mapping[str, str], provider: str) -> float:
    """The provider's recent new attributes per 1,000 cost units, whatever the strategy."""
    cost = float(record.get(field_name(provider, "_all", "cost"), 0) or 0)
    return float(record.get(field_name(provider, "_all", "new"), 0) or 0) * 1000 / cost if cost else 0.0


def recent_cost_per_call(record: Mapping[str, str], provider: str) -> float:
    """The provider's recent cost units per call, whatever the strategy (0: no call yet)."""
    cost = float(record.get(field_name(provider, "_all", "cost"), 0) or 0)
    calls = float(record.get(field_name(provider, "_all", "cycles"), 0) or 0)
    return cost / calls if calls else 0.0


def choose(
    candidates: Iterable[Strategy],
    stats: Mapping[Strategy, Arm],
    rng: random.Random,
    *,
    per_call: float = 0.0,
) -> Strategy:
    """Thompson sampling of new attributes per cost unit, against the provider's recent yield
    (``Arm.relative``): each strategy's ratio drawn from its Gamma posterior (new attributes a
    Poisson count, of mean ratio × expected), the highest drawn wins; ``EXPLORE`` of the
    time, one drawn uniformly instead. The prior expects a strategy to bring as many new
    attributes per call as the provider's recent calls (``per_call``: their cost): one that
    costs more must show it brings more."""
    options = list(candidates)
    if len(options) == 1:
        return options[0]
    if rng.random() < EXPLORE:
        return rng.choice(options)
    best, best_rate = options[0], -1.0
    for strategy in options:
        arm = stats.get(strategy, Arm())
        dearer = arm.cost / arm.cycles / per_call if per_call and arm.cycles else 1.0
        shape = PRIOR_NEW + EVIDENCE * arm.new
        rate = PRIOR_EXPECTED * dearer + EVIDENCE * arm.expected
        drawn = rng.gammavariate(shape, 1 / rate)
        if drawn > best_rate:
            best, best_rate = strategy, drawn
    return best


def winning(stats: Mapping[Strategy, Arm]) -> Strategy | None:
    """The strategy with the best discounted yield against the provider's recent one (None
    before any cycle)."""
    tried = [s for s, arm in stats.items() if arm.expected > 0]
    return max(tried, key=lambda s: stats[s].relative) if tried else None


def cost_units(settings: Settings, provider: str, prompt_tokens: int, completion_tokens: int) -> float:
    """Tokens weighted by the provider's prices (their mean weighs 1): with prices known the
    choice is per US$; without, per token."""
    spec = settings.providers.get(provider)
    price_in = spec.price_input_per_mtok if spec else 0.0
    price_out = spec.price_output_per_mtok if spec else 0.0
    mean = (price_in + price_out) / 2
    if mean <= 0:
        return float(prompt_tokens + completion_tokens)
    return (prompt_tokens * price_in + completion_tokens * price_out) / mean
