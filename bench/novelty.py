"""Novelty prompts: unique attributes per 1,000 tokens, ``fixed`` against ``novelty``.

A fake OpenAI model over real HTTP draws from a finite, skewed vocabulary (its favourites
come up again and again, so it saturates) and mostly obeys "do not repeat these" lists
(an item the prompt lists is drawn again with probability ``OBEY``); it reports usage from
the real prompt and answer (4 characters a token), so the avoid list's own tokens are paid
for. The real cycle code runs one cycle after another in-process (bloom filter on), for the
same number of requests with each strategy. Measured after the first ``WARMUP`` unique
items, where the fixed prompt's yield collapses.
"""

from __future__ import annotations

import random
import time
from typing import Any

from bench.report import write_section
from orchestrator_bridge.cli.embedded import EmbeddedRedis
from producer_tasks.generation.cycle import run_cycle
from producer_tasks.runtime import Runtime
from producer_tasks.settings import load_settings
from producer_tasks.state import control
from producer_tasks.state.fleet import Fleet
from tests.conftest import RecordingDispatcher, provider_env
from tests.fakellm import FakeLLM

REQUESTS = 400
VOCABULARY = 2000
SKEW = 5.0  # P(one of the top k of V) = (k/V)**(1/SKEW): the top 50 of 2,000 are 48 % of draws
BATCH = 30
OBEY = 0.9
SMALL_BUDGET = 60  # about the 10 most repeated names
FACETS = 20
WARMUP = 300  # unique items before the yield is measured
SAMPLE_EVERY = 50


def measure(
    redis_url: str, fake: FakeLLM, strategy: str, avoid_tokens: int = 300, facets: int = 0
) -> dict[str, Any]:
    settings = load_settings(
        {
            "REDIS_URL": redis_url,
            "PRODUCER_PROMPT_STRATEGY": strategy,
            "PRODUCER_AVOID_TOKENS": str(avoid_tokens),
            "PRODUCER_FACETS": str(facets),
            "PRODUCER_BLOOM_FILTER": "true",
            "PRODUCER_CONCURRENCY": "1",
            "PRODUCER_BLOOM_CAPACITY": "100000",
            **provider_env(fake),
        }
    )
    fleet = Fleet.from_settings(settings)
    fleet.redis.flushall()
    fake.requests.clear()
    fake.rng = random.Random(17)
    dispatcher = RecordingDispatcher()
    runtime = Runtime.create(settings, dispatcher, fleet=fleet, rng=random.Random(11))
    fleet.heartbeat("bench@local", ["openai"])
    result = control.start_topic(
        fleet,
        settings,
        topic="cheese",
        prompt="List {batch_size} {topic} of the world, one per line.",
        weights={"openai": 1.0},
        temperature=0.9,
        max_tokens=300,
        batch_size=BATCH,
    )
    assert result.accepted, result.reason
    runtime.lanes.reconcile()
    curve: list[tuple[int, int]] = []  # (tokens spent, unique delivered)
    request = 0
    while request < REQUESTS:
        if not dispatcher.sent:  # the lane waits (e.g. after a batch with nothing new): wake it
            fleet.heartbeat("bench@local", ["openai"])
            time.sleep(0.01)
            runtime.lanes.reconcile()
            continue
        run_cycle(runtime, worker="bench@local", **dispatcher.sent.pop(0))
        request = fake.count(kind="/chat/completions")
        if request % SAMPLE_EVERY == 0 or request == REQUESTS:
            stats = fleet.read_stats("openai")
            curve.append((stats.tokens_used, fleet.read_counters().get("attributes_appended", 0)))
    runtime.clients.close()
    fleet.close()
    start = next((point for point in curve if point[1] >= WARMUP), curve[0])
    end = curve[-1]
    per_1000 = (end[1] - start[1]) * 1000 / max(1, end[0] - start[0])
    return {"curve": curve, "per_1000_after_warmup": per_1000, "unique": end[1], "tokens": end[0]}


VARIANTS = (  # (label, strategy, PRODUCER_AVOID_TOKENS, PRODUCER_FACETS); the default last
    ("`fixed`", "fixed", 0, 0),
    (f"`novelty`, avoid list only ({SMALL_BUDGET} tokens)", "novelty", SMALL_BUDGET, 0),
    ("`novelty`, avoid list only (300 tokens)", "novelty", 300, 0),
    (f"`novelty`, {FACETS} facets + avoid list ({SMALL_BUDGET} tokens)", "novelty", SMALL_BUDGET, FACETS),
    (f"`novelty`, {FACETS} facets + avoid list (300 tokens)", "novelty", 300, FACETS),
    (f"`novelty`, {FACETS} facets, no avoid list: **the default**", "novelty", 0, FACETS),
)


def run() -> dict[str, Any]:
    fake = FakeLLM().start()
    results: list[tuple[str, dict[str, Any]]] = []
    try:
        fake.set(
            "openai",
            vocabulary=VOCABULARY,
            skew=SKEW,
            batch=BATCH,
            topic="cheese",
            obey=OBEY,
            usage_from_text=True,
            facets=FACETS,
        )
        with EmbeddedRedis(unix_socket=False) as server:
            for label, strategy, avoid_tokens, facets in VARIANTS:
                results.append((label, measure(server.url, fake, strategy, avoid_tokens, facets)))
    finally:
        fake.stop()
    fixed = results[0][1]["per_1000_after_warmup"]
    table = "\n".join(
        f"| {label} | {r['unique']:,} | {r['tokens']:,} | {r['per_1000_after_warmup']:.2f} "
        f"| {r['per_1000_after_warmup'] / fixed:.2f}× |"
        for label, r in results
    )
    default = results[-1][1]
    gain = default["per_1000_after_warmup"] / fixed
    curve_rows = "\n".join(
        f"| {(i + 1) * SAMPLE_EVERY} | {f[0]:,} | {f[1]:,} | {n[0]:,} | {n[1]:,} |"
        for i, (f, n) in enumerate(zip(results[0][1]["curve"], default["curve"], strict=True))
    )
    write_section(
        "novelty",
        f"""## Novelty prompts: unique attributes per 1,000 tokens, fixed against novelty

A fake model over real HTTP answers {BATCH} names per request from {VOCABULARY:,}, skewed
(index = V·u^{SKEW:g}: its top 50 names are half of what it writes, as a chat model returns
its favourites again and again), obeys "do not repeat these" lists {OBEY:.0%} of the time,
and knows {FACETS} facets of the topic, {VOCABULARY // FACETS} names each. Asked for them, it lists
them; asked to focus on one, it writes that facet's names, skewed within it (the facet's
own favourites); unprompted, it first picks a facet, the popular ones far more often
(P ∝ 1/(k+1)²: the first facet is 63 % of what it writes, the last 0.16 %), as a chat model
asked for "cheeses" writes French and Italian ones, and hardly ever Portuguese ones
unless asked. Usage counts the real prompt and answer
(4 characters a token), so the avoid list, the facet line and the one request for the
facets are paid for. {REQUESTS} requests per variant, one cycle at a time, bloom filter on.

| variant | unique items | tokens | unique per 1,000 tokens after the first {WARMUP} unique | / fixed |
| --- | ---: | ---: | ---: | ---: |
{table}

**Novelty (the default: facets, no avoid list) / fixed = {gain:.2f}×** (goal ≥ 2×).

What each technique does here: the avoid list costs more tokens than it saves (this
model's known items are spread over hundreds of names, a list carries a few dozen, and
every prompt pays for it), alone or with facets, so it is off by default
(`PRODUCER_AVOID_TOKENS=0`; set a budget for models whose prompt tokens are cheap against
completions). Facets move each request to a part of the vocabulary the fixed prompt hardly
ever reaches, and drawing them in proportion to each facet's share of new names lets
exhausted facets fade (sharper draws, weights squared or cubed, measured the same).
The gain rests on the model writing different names when asked for a facet, which is what
chat models do for "only Alpine cheeses"; a model that ignored the focus line would gain
nothing from it, and lose its tokens (about 15 a prompt, plus one request per topic).

Unique items against tokens spent (the curve), fixed against the default:

| requests | fixed: tokens | fixed: unique | novelty: tokens | novelty: unique |
| ---: | ---: | ---: | ---: | ---: |
{curve_rows}""",
    )
    return {label: r["per_1000_after_warmup"] for label, r in results} | {"gain": gain}


if __name__ == "__main__":
    print(run())
