"""The novelty prompts' record, in Redis: per topic, what was delivered and what came back,
and the topic's facets with what each still brings.

A model keeps returning its favourites; the bloom filter stops them from reaching the
orchestrator, but the tokens are spent. So each cycle records what it delivered and which
of its candidates were already known (``remember_call``, in the delivery's round trip),
and the next prompts list a sample of that record to avoid: the most repeated items
first, then a rotating random draw from the rest. Once per topic one cycle asks the model
for the topic's facets (``ask_for_facets`` decides which); each later prompt focuses on
one, drawn in proportion to the share of new attributes it has brought (``choose_facet``),
so exhausted facets fade and fresh ones are tried. The record is bounded (``CAP`` items)
and dropped with the topic (``control``'s new-topic transaction).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any

from producer_tasks.generation.strategy import DECAY, TREND_KEEP
from producer_tasks.state.client import translated
from producer_tasks.state.fleet import Fleet
from producer_tasks.state.scripts import CommandCall, Remember, ScriptCall

CAP = 5000  # items kept per topic
TTL_MS = 7 * 24 * 3600 * 1000  # an abandoned topic's record goes away by itself
TOP = 40  # most repeated items read per sample
RANDOM = 80  # random items read per sample (the rotating part)
ASK_TTL_MS = 120_000  # a cycle asking for the facets that fails: another asks after this


@dataclass(frozen=True)
class Record:
    """What the next prompt steers by."""

    most_repeated: list[str] = field(default_factory=list)
    others: list[str] = field(default_factory=list)
    facets: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (cycles, new attributes)
    strategies: dict[str, str] = field(default_factory=dict)  # what each prompt strategy brought


@dataclass(frozen=True)
class Spent:
    """What a cycle's prompt strategy cost on its provider ("" strategy: nothing to count)."""

    provider: str = ""
    strategy: str = ""
    cost: float = 0.0  # tokens weighted by price
    strategies: tuple[str, ...] = ()  # the provider's strategies, whose evidence decays


def remember_call(
    fleet: Fleet,
    *,
    epoch: int,
    delivered: list[str],
    repeated: list[str],
    facet: str = "",
    brought: int = 0,
    proposed: list[str] | None = None,
    spent: Spent | None = None,
) -> ScriptCall:
    keys = fleet.keys
    spent = spent or Spent()
    return Remember(
        state_key=keys.state,
        known_key=keys.known,
        facets_key=keys.facets,
        yield_key=keys.facet_yield,
        strategy_key=keys.strategy_yield,
        epoch=epoch,
        delivered_json=json.dumps(delivered),
        repeated_json=json.dumps(repeated),
        facet=facet,
        brought=brought,
        proposed_json=json.dumps(proposed or []),
        cap=CAP,
        ttl_ms=TTL_MS,
        provider=spent.provider,
        strategy=spent.strategy,
        cost=spent.cost,
        decay=DECAY,
        trend_keep=TREND_KEEP,
        strategies_json=json.dumps(spent.strategies),
    ).call()


def read_calls(fleet: Fleet, *, known: bool = True) -> list[CommandCall]:
    """The reads of the current topic's record (the known items only if ``known``), to run in
    the cycle's view (``Fleet.view(extra=…)``, no round trip of their own); ``parse`` reads
    the replies."""
    keys = fleet.keys
    calls = [
        strategies_call(fleet),
        CommandCall(("HGETALL", keys.facets)),
        CommandCall(("HGETALL", keys.facet_yield)),
    ]
    if known:
        calls.append(CommandCall(("ZREVRANGEBYSCORE", keys.known, "+inf", 1, "LIMIT", 0, TOP)))
        calls.append(CommandCall(("ZRANDMEMBER", keys.known, RANDOM)))
    return calls


def parse(replies: list[Any]) -> Record:
    strategies, cycles, brought, *listed = replies
    facets = {name: (int(n), int(brought.get(name, 0))) for name, n in (cycles or {}).items()}
    top, drawn = listed or ([], [])
    return Record(list(top or []), list(drawn or []), facets, dict(strategies or {}))


def read(fleet: Fleet, *, known: bool = True) -> Record:
    """The current topic's record, in one round trip of its own."""
    return parse(fleet.run(*read_calls(fleet, known=known)))


def avoid_candidates(fleet: Fleet) -> tuple[list[str], list[str]]:
    """(most repeated first, a random draw of the others) from the current topic's record."""
    record = read(fleet)
    return record.most_repeated, record.others


@translated("ask for facets")
def ask_for_facets(fleet: Fleet, epoch: int) -> bool:
    """True for the one cycle (per topic, per ``ASK_TTL_MS``) that asks the model for facets."""
    return bool(fleet.redis.set(fleet.keys.facets_asked, str(epoch), nx=True, px=ASK_TTL_MS))


def choose_facet(facets: dict[str, tuple[int, int]], *, batch_size: int, rng: random.Random) -> str:
    """A facet drawn in proportion to (new attributes + 1) / (names asked for + 1): an
    untried facet weighs 1, one that keeps bringing what is known fades towards 0."""
    if not facets:
        return ""
    names = sorted(facets)
    weights = [(facets[n][1] + 1) / (facets[n][0] * batch_size + 1) for n in names]
    return rng.choices(names, weights=weights)[0]


def strategies_call(fleet: Fleet) -> CommandCall:
    """The read of what each prompt strategy brought on each provider for the current topic
    (the hash ``strategy.arms`` reads), to run with other reads."""
    return CommandCall(("HGETALL", fleet.keys.strategy_yield))


def read_strategies(fleet: Fleet) -> dict[str, str]:
    """``strategies_call`` in a round trip of its own."""
    (record,) = fleet.run(strategies_call(fleet))
    return dict(record or {})
