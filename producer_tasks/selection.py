"""Provider selection: weighted random choice, as pure functions.

Only providers that are eligible (configured, usable, served by a worker) are passed in.
Weights that are zero, negative or not finite count as zero; when every eligible
provider's weight is zero the choice is uniform (so a fleet never stalls on weights alone).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence

from producer_tasks.errors import NoUsableProviderError


def effective_weight(weight: float | None) -> float:
    if weight is None or not math.isfinite(weight) or weight <= 0:
        return 0.0
    return weight


def weighted_choice(
    eligible: Sequence[str], weights: Mapping[str, float], *, rng: random.Random | None = None
) -> str:
    """One provider from ``eligible``, with probability proportional to its weight."""
    if not eligible:
        raise NoUsableProviderError("no eligible provider")
    draw = rng or random
    values = [effective_weight(weights.get(name)) for name in eligible]
    total = math.fsum(values)
    if total <= 0 or not math.isfinite(total):
        return eligible[draw.randrange(len(eligible))]
    point = draw.random() * total
    for name, value in zip(eligible, values, strict=True):
        point -= value
        if point < 0:
            return name
    return next(n for n, v in zip(reversed(eligible), reversed(values), strict=True) if v > 0)


def adaptive_weights(
    weights: Mapping[str, float],
    *,
    novelty: Mapping[str, float],
    success: Mapping[str, float],
    cost_per_request: Mapping[str, float] | None = None,
    floor: float = 0.1,
) -> dict[str, float]:
    """Scale each weight by recent novelty and success rate (both in 0..1), floored.

    With ``cost_per_request`` (US$, ``PRODUCER_SELECTION=adaptive-cost``) the factor is
    novelty per dollar instead, relative to the best provider's (a free provider counts as
    costing a tenth of the cheapest paid one). The floor keeps every provider with a
    positive orchestrator weight selectable, so its moving averages can recover.
    """
    factors = {name: novelty.get(name, 1.0) * success.get(name, 1.0) for name in weights}
    paid = [c for c in (cost_per_request or {}).values() if c > 0]
    if cost_per_request is not None and paid:
        least = min(paid) / 10
        per_dollar = {n: f / max(cost_per_request.get(n, 0.0), least) for n, f in factors.items()}
        best = max(per_dollar.values(), default=0.0)
        factors = {n: v / best if best > 0 else 1.0 for n, v in per_dollar.items()}
    result: dict[str, float] = {}
    for name, weight in weights.items():
        base = effective_weight(weight)
        result[name] = 0.0 if base == 0 else base * max(floor, min(1.0, factors[name]))
    return result
