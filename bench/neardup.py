"""Near-duplicates reaching the orchestrator, with the canonical check off and on.

A model that writes the same items in surface variants (case, hyphens, accents, "(PDO)",
"AOP", ", DOP", plurals, "The ...": ``tests/variants.py``) produces 2,000 candidates in
batches of 20, checked by the real bloom check against a real Redis. The generator knows
each variant's item, so "a near-duplicate" is judged without the code under test. Then
the false-merge rate on names that only look alike ("Gouda" / "Gouda Reserve", ...).
"""

from __future__ import annotations

import random
from typing import Any

from bench.report import write_section
from orchestrator_bridge.cli.embedded import EmbeddedRedis
from producer_tasks.canonical import canonical
from producer_tasks.settings import load_settings
from producer_tasks.state import bloom
from producer_tasks.state.fleet import Fleet
from tests.variants import BASES, LOOKALIKES, variant

CANDIDATES, BATCH = 2000, 20


def share(redis_url: str, *, near: bool) -> tuple[float, int]:
    settings = load_settings(
        {
            "REDIS_URL": redis_url,
            "PRODUCER_NEAR_DUPLICATES": str(near).lower(),
            "PRODUCER_BLOOM_CAPACITY": "100000",
        }
    )
    fleet = Fleet.from_settings(settings)
    fleet.redis.flushdb()
    rng = random.Random(3)
    drawn = [rng.choice(BASES) for _ in range(CANDIDATES)]
    forms = [variant(base, rng) for base in drawn]
    base_of = dict(zip(forms, drawn, strict=False))
    delivered: list[str] = []
    for start in range(0, len(forms), BATCH):
        delivered += bloom.check_and_add(fleet, settings, forms[start : start + BATCH]).passed
    fleet.close()
    bases = [base_of[form] for form in delivered]
    return 1 - len(set(bases)) / len(bases), len(delivered)


def run() -> dict[str, Any]:
    with EmbeddedRedis(unix_socket=False) as server:
        off, n_off = share(server.url, near=False)
        on, n_on = share(server.url, near=True)
    merged = len(LOOKALIKES) - len({canonical(name) for name in LOOKALIKES})
    result = {"off": off, "on": on, "delivered_off": n_off, "delivered_on": n_on, "false_merges": merged}
    write_section(
        "neardup",
        f"""## Near-duplicates: variants of the same item reaching the orchestrator

{CANDIDATES:,} candidates from a model that writes {len(BASES)} items in surface variants
(case, hyphens, accents, "(PDO)", "AOP", ", DOP", plurals, "The …"), in batches of {BATCH},
through the real bloom check (exact form, plus the canonical form when on).

| canonical check | delivered | near-duplicate share |
| --- | ---: | ---: |
| off (`PRODUCER_NEAR_DUPLICATES=false`) | {n_off:,} | {off:.1%} |
| on (default) | {n_on:,} | {on:.1%} |

**Goal ≤ 2 % with it on: {on:.1%}.** False merges among {len(LOOKALIKES)} names that only
look alike ("Gouda" / "Gouda Reserve" / "Aged Gouda", "Brie" / "Brie Noir", "Camembert" /
"Camembert de Normandie", ...): **{merged}** (the rule is in `producer_tasks/canonical.py`).""",
    )
    return result
