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
    floor: float = 0.1,
) -> dict[str, float]:
    """Scale each weight by recent novelty and success rate (both in 0..1), floored.

    The floor keeps every provider with a positive orchestrator weight selectable, so
    its moving averages can recover.
    """
    result: dict[str, float] = {}
    for name, weight in weights.items():
        base = effective_weight(weight)
        if base == 0:
            result[name] = 0.0
            continue
        factor = novelty.get(name, 1.0) * success.get(name, 1.0)
        result[name] = base * max(floor, min(1.0, factor))
    return result
