"""The prompt strategies and the choice among them (generation/strategy.py), without Redis:
which strategies a deployment may use, what each puts in a prompt, and Thompson sampling
on what they brought."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from producer_tasks.generation import strategy
from producer_tasks.generation.strategy import Arm, Strategy
from producer_tasks.settings import load_settings

ALL = tuple(Strategy)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, ALL),  # adaptive, the default: every strategy
        ({"PRODUCER_AVOID_TOKENS": "0"}, (Strategy.FIXED, Strategy.FACETS, Strategy.AVOID_LONG)),
        ({"PRODUCER_AVOID_TOKENS_LONG": "0"}, tuple(s for s in ALL if s is not Strategy.AVOID_LONG)),
        ({"PRODUCER_FACETS": "0"}, (Strategy.FIXED, Strategy.AVOID, Strategy.AVOID_LONG)),
        ({"PRODUCER_PROMPT_STRATEGY": "fixed"}, (Strategy.FIXED,)),
        ({"PRODUCER_PROMPT_STRATEGY": "avoid-long"}, (Strategy.AVOID_LONG,)),
        ({"PRODUCER_PROMPT_STRATEGY": "novelty"}, (Strategy.FACETS_AVOID,)),  # its former name
    ],
)
def test_the_strategies_a_deployment_may_use(env: dict[str, str], expected: tuple[Strategy, ...]) -> None:
    assert strategy.available(load_settings(env)) == expected


def test_what_each_strategy_puts_in_a_prompt_and_the_widest() -> None:
    settings = load_settings({"PRODUCER_AVOID_TOKENS": "50", "PRODUCER_AVOID_TOKENS_LONG": "400"})
    plans = {s: strategy.plan(s, settings) for s in Strategy}
    assert [(p.facets, p.avoid_tokens) for p in plans.values()] == [
        (False, 0),
        (True, 0),
        (False, 50),
        (False, 400),
        (True, 50),
    ]
    widest = strategy.widest(settings)
    assert (widest.facets, widest.avoid_tokens) == (True, 400)
    fixed = strategy.widest(load_settings({"PRODUCER_PROMPT_STRATEGY": "fixed"}))
    assert (fixed.facets, fixed.avoid_tokens) == (False, 0)


def draws(stats: dict[Strategy, Arm], n: int = 2000, *, per_call: float = 0.0) -> Counter[Strategy]:
    rng = random.Random(5)
    return Counter(strategy.choose(ALL, stats, rng, per_call=per_call) for _ in range(n))


def arm(relative: float, *, cycles: float = 60, per_call: float = 200, new_per_call: float = 3) -> Arm:
    """``cycles`` of evidence: ``new_per_call`` new attributes a call at ``relative`` times
    the provider's recent yield."""
    new = new_per_call * cycles
    return Arm(
        cycles=cycles,
        new=new,
        cost=per_call * cycles,
        expected=new / relative,
        tried=int(cycles),
    )


def test_with_evidence_the_best_strategy_is_chosen_and_the_others_keep_a_floor() -> None:
    stats = {s: arm(0.5) for s in ALL} | {Strategy.FACETS: arm(1.2)}
    chosen = draws(stats)
    assert chosen[Strategy.FACETS] >= 0.9 * 2000, chosen
    for other in set(ALL) - {Strategy.FACETS}:  # EXPLORE: each is still drawn now and then
        assert 0 < chosen[other] <= 0.03 * 2000, chosen


def test_untried_strategies_are_tried_and_close_ones_share() -> None:
    chosen = draws({Strategy.FIXED: arm(1.0)})
    assert all(chosen[s] > 100 for s in ALL), chosen  # nothing known of them: tried
    close = draws({s: arm(1.0, cycles=3) for s in ALL})
    assert min(close.values()) > 200, close  # little evidence, the same yield: all drawn


def test_a_dearer_strategy_must_show_it_brings_more() -> None:
    """Hardly any evidence yet, and one costs twice as many tokens a call as the provider's
    recent calls: the prior (as many new attributes per call) draws it half as often."""
    cheap, dear = arm(1.0, cycles=0.01, per_call=200), arm(1.0, cycles=0.01, per_call=400)
    stats = {Strategy.FIXED: cheap, Strategy.AVOID_LONG: dear}
    rng = random.Random(3)
    chosen = Counter(
        strategy.choose((Strategy.FIXED, Strategy.AVOID_LONG), stats, rng, per_call=200) for _ in range(2000)
    )
    assert chosen[Strategy.FIXED] > 1.6 * chosen[Strategy.AVOID_LONG], chosen  # 2:1 in expectation


def test_one_strategy_is_no_choice() -> None:
    assert strategy.choose((Strategy.AVOID,), {}, random.Random(1)) is Strategy.AVOID


def test_arms_winning_and_yields_from_the_record() -> None:
    record = {
        "openai/facets/cycles": "10",
        "openai/facets/new": "50",
        "openai/facets/cost": "2000",
        "openai/facets/expected": "25",
        "openai/facets/tried": "12",
        "openai/fixed/cycles": "5",
        "openai/fixed/new": "10",
        "openai/fixed/cost": "1000",
        "openai/fixed/expected": "12.5",
        "openai/fixed/tried": "5",
        "anthropic/avoid/tried": "1",
        "openai/_all/cost": "3000",
        "openai/_all/cycles": "15",
    }
    arms = strategy.arms(record, "openai")
    assert set(arms) == {Strategy.FACETS, Strategy.FIXED}
    assert arms[Strategy.FACETS].relative == 2.0 and arms[Strategy.FACETS].new == 50
    assert arms[Strategy.FACETS].tried == 12
    assert strategy.winning(arms) is Strategy.FACETS
    assert strategy.winning({}) is None
    assert strategy.recent_cost_per_call(record, "openai") == 200.0
    assert strategy.recent_cost_per_call(record, "anthropic") == 0.0


def test_cost_units_weigh_tokens_by_price() -> None:
    free = load_settings(
        {"PRODUCER_OPENAI_PRICE_INPUT_PER_MTOK": "0", "PRODUCER_OPENAI_PRICE_OUTPUT_PER_MTOK": "0"}
    )
    assert strategy.cost_units(free, "openai", 100, 50) == 150.0  # no prices: per token
    priced = load_settings(
        {"PRODUCER_OPENAI_PRICE_INPUT_PER_MTOK": "1", "PRODUCER_OPENAI_PRICE_OUTPUT_PER_MTOK": "3"}
    )
    assert strategy.cost_units(priced, "openai", 100, 50) == pytest.approx((100 * 1 + 50 * 3) / 2)  # per US$
