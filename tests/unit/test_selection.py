"""Weighted selection: a statistical test over many draws with a fixed seed."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from producer_tasks.errors import NoUsableProviderError
from producer_tasks.selection import adaptive_weights, weighted_choice

DRAWS = 60_000


def chi_square(observed: Counter[str], expected: dict[str, float]) -> float:
    return sum((observed[k] - e) ** 2 / e for k, e in expected.items() if e > 0)


def test_frequencies_match_weights() -> None:
    rng = random.Random(1234)
    weights = {"openai": 2.0, "anthropic": 1.0, "mock": 0.5}
    eligible = list(weights)
    counts = Counter(weighted_choice(eligible, weights, rng=rng) for _ in range(DRAWS))
    total = sum(weights.values())
    expected = {k: DRAWS * w / total for k, w in weights.items()}
    # chi-square with 2 degrees of freedom: 13.8 is the 0.999 quantile
    assert chi_square(counts, expected) < 13.8
    for name, weight in weights.items():
        assert counts[name] / DRAWS == pytest.approx(weight / total, abs=0.01)


def test_zero_negative_and_non_finite_weights_are_never_chosen() -> None:
    rng = random.Random(5)
    weights = {"a": 1.0, "b": 0.0, "c": -3.0, "d": math.nan, "e": math.inf}
    counts = Counter(weighted_choice(list(weights), weights, rng=rng) for _ in range(5000))
    assert set(counts) == {"a"}


def test_uniform_fallback_when_no_positive_weight() -> None:
    rng = random.Random(9)
    eligible = ["a", "b", "c"]
    counts = Counter(weighted_choice(eligible, {"a": 0.0}, rng=rng) for _ in range(30_000))
    expected = {k: 10_000.0 for k in eligible}
    assert chi_square(counts, expected) < 13.8


def test_only_eligible_providers_are_chosen() -> None:
    rng = random.Random(3)
    weights = {"openai": 10.0, "mock": 1.0}
    assert {weighted_choice(["mock"], weights, rng=rng) for _ in range(100)} == {"mock"}
    with pytest.raises(NoUsableProviderError):
        weighted_choice([], weights, rng=rng)


def test_adaptive_weights_scale_and_floor() -> None:
    result = adaptive_weights(
        {"a": 2.0, "b": 2.0, "c": 0.0},
        novelty={"a": 0.9, "b": 0.01},
        success={"a": 1.0, "b": 1.0},
        floor=0.1,
    )
    assert result["a"] == pytest.approx(1.8)
    assert result["b"] == pytest.approx(0.2)  # floored, never starved
    assert result["c"] == 0.0


def test_adaptive_cost_weighs_novelty_per_dollar() -> None:
    weights = {"cheap": 1.0, "dear": 1.0, "free": 1.0}
    novelty = {"cheap": 0.5, "dear": 0.9, "free": 0.2}
    success = {"cheap": 1.0, "dear": 1.0, "free": 1.0}
    per_request = adaptive_weights(weights, novelty=novelty, success=success)
    assert per_request["dear"] > per_request["cheap"] > per_request["free"]  # novelty alone
    cost = {"cheap": 0.001, "dear": 0.01, "free": 0.0}
    per_dollar = adaptive_weights(weights, novelty=novelty, success=success, cost_per_request=cost)
    # novelty per US$: cheap 500, dear 90, free 0.2 / 0.0001 = 2,000 (a tenth of the cheapest paid)
    assert per_dollar["free"] == 1.0
    assert per_dollar["cheap"] == pytest.approx(0.25)
    assert per_dollar["dear"] == 0.1  # 0.045: floored, still selectable
    unpriced = adaptive_weights(weights, novelty=novelty, success=success, cost_per_request={"cheap": 0.0})
    assert unpriced == per_request  # no prices known: per request, as before
