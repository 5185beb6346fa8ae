"""Prompt strategies on four model shapes: unique attributes per 1,000 tokens, each fixed
strategy against ``adaptive`` (issue 31), and two providers of different shapes in one run.

A fake model over real HTTP (the official SDKs) in four shapes (facet-following,
avoid-obeying, deaf, changing; described in the report). The real cycle code runs one cycle
after another in-process (bloom filter on), for the same number of requests per strategy;
yields are counted after a warm-up of ``WARMUP`` requests.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.report import write_section
from orchestrator_bridge.cli.embedded import EmbeddedRedis
from producer_tasks.generation import strategy as strategies
from producer_tasks.generation.cycle import run_cycle
from producer_tasks.runtime import Runtime
from producer_tasks.settings import load_settings
from producer_tasks.state import control
from producer_tasks.state.fleet import Fleet
from tests.conftest import RecordingDispatcher, provider_env
from tests.fakellm import FakeLLM

REQUESTS = 500
WARMUP = 100  # requests before the yield is counted (the issue allows at most 100)
VOCABULARY = 5000
SKEW = 5.0  # P(one of the top k of V) = (k/V)**(1/SKEW): the top 50 of 2,000 are 48 % of draws
BATCH = 30
FACETS = 20
WINDOW = 50  # requests per row of the "chosen over time" table
SEEDS = (11, 12)  # adaptive is a random choice: its figure is the mean of these runs

MODEL = {"vocabulary": VOCABULARY, "skew": SKEW, "batch": BATCH, "topic": "cheese"}
MODEL |= {"usage_from_text": True, "facets": FACETS}
FOLLOWING = MODEL | {"obey": 0.9, "follow_focus": True}
OBEYING = MODEL | {"obey": 0.95, "follow_focus": False, "listed_skew": 1.0}
DEAF = MODEL | {"obey": 0.0, "follow_focus": False}
SHAPES: dict[str, tuple[dict[str, Any], dict[str, Any] | None]] = {  # (first, after REQUESTS / 2)
    "facet-following": (FOLLOWING, None),
    "avoid-obeying": (OBEYING, None),
    "deaf": (DEAF, None),
    "changing": (MODEL | {"obey": 0.0, "follow_focus": True}, OBEYING),
}
VARIANTS = (*[s.value for s in strategies.Strategy], strategies.ADAPTIVE)


@dataclass
class Run:
    """One run's curve: per request, (tokens, unique) and the strategies chosen so far."""

    points: list[tuple[int, int]] = field(default_factory=list)
    chosen: list[Counter[str]] = field(default_factory=list)  # cumulative "tried", per WINDOW
    winning: str = ""  # the strategy the provider shows as winning at the end

    def per_1000(self, start: int = WARMUP, end: int | None = None) -> float:
        first, last = self.points[start - 1], self.points[(end or len(self.points)) - 1]
        return (last[1] - first[1]) * 1000 / max(1, last[0] - first[0])


def measure(
    redis_url: str,
    fake: FakeLLM,
    variant: str,
    shapes: dict[str, tuple[dict[str, Any], dict[str, Any] | None]],
    *,
    seed: int = 11,
) -> dict[str, Run]:
    """``REQUESTS`` requests per provider of ``shapes`` (api -> shape), with ``variant``."""
    apis = list(shapes)
    settings = load_settings(
        {
            "REDIS_URL": redis_url,
            "PRODUCER_PROMPT_STRATEGY": variant,
            "PRODUCER_FACETS": str(FACETS),
            "PRODUCER_CONCURRENCY": str(len(apis)),
            "PRODUCER_BLOOM_CAPACITY": "100000",
            # per token: the bench counts tokens (with list prices the choice is per US$)
            "PRODUCER_OPENAI_PRICE_INPUT_PER_MTOK": "0",
            "PRODUCER_OPENAI_PRICE_OUTPUT_PER_MTOK": "0",
            "PRODUCER_ANTHROPIC_PRICE_INPUT_PER_MTOK": "0",
            "PRODUCER_ANTHROPIC_PRICE_OUTPUT_PER_MTOK": "0",
            **provider_env(fake),
        }
    )
    fleet = Fleet.from_settings(settings)
    fleet.redis.flushall()
    fake.requests.clear()
    fake.rng = random.Random(17 + seed - 11)
    for api, (first, _) in shapes.items():
        fake.set(api, **first)
    dispatcher = RecordingDispatcher()
    runtime = Runtime.create(settings, dispatcher, fleet=fleet, rng=random.Random(seed))
    fleet.heartbeat("bench@local", apis)
    result = control.start_topic(
        fleet,
        settings,
        topic="cheese",
        prompt="List {batch_size} {topic} of the world, one per line.",
        weights=dict.fromkeys(apis, 1.0),
        temperature=0.9,
        max_tokens=300,
        batch_size=BATCH,
    )
    assert result.accepted, result.reason
    runtime.lanes.reconcile()
    runs = {api: Run() for api in apis}
    _drive(runtime, fake, dispatcher, shapes, runs)
    record = fleet.redis.hgetall(fleet.keys.strategy_yield)
    for api, found in runs.items():
        found.winning = str(strategies.winning(strategies.arms(record, api)) or "")
    runtime.clients.close()
    fleet.close()
    return runs


def _drive(
    runtime: Runtime,
    fake: FakeLLM,
    dispatcher: RecordingDispatcher,
    shapes: dict[str, tuple[dict[str, Any], dict[str, Any] | None]],
    runs: dict[str, Run],
) -> None:
    fleet = runtime.fleet
    counted = {api: 0 for api in shapes}
    kind = {"openai": "/chat/completions", "anthropic": "/messages"}
    while min(counted.values()) < REQUESTS:
        if not dispatcher.sent:  # the lane waits (e.g. after a batch with nothing new): wake it
            fleet.heartbeat("bench@local", list(shapes))
            time.sleep(0.01)
            runtime.lanes.reconcile()
            continue
        message = dispatcher.sent.pop(0)
        api = message["provider"]
        if counted[api] >= REQUESTS:
            continue  # this provider has had its requests: the lane stays with the other
        run_cycle(runtime, worker="bench@local", **message)
        requests = fake.count(api, kind=kind[api])
        while counted[api] < requests:
            counted[api] += 1
            stats = fleet.read_stats(api)
            runs[api].points.append((stats.tokens_used, stats.unique_contributions))
            if counted[api] % WINDOW == 0:
                arms = strategies.arms(fleet.redis.hgetall(fleet.keys.strategy_yield), api)
                runs[api].chosen.append(Counter({s.value: a.tried for s, a in arms.items()}))
            if counted[api] == REQUESTS // 2 and shapes[api][1] is not None:
                fake.set(api, **shapes[api][1])  # the changing shape: its second half


def _window_choice(run: Run) -> list[str]:
    """Per WINDOW of requests, the strategy chosen most in it, and its share."""
    rows, before = [], Counter[str]()
    for now in run.chosen:
        window = now - before
        before = now
        name, count = window.most_common(1)[0] if window else ("-", 0)
        rows.append(f"{name} {count * 100 // max(1, sum(window.values()))} %")
    return rows


def shapes_table(redis_url: str, fake: FakeLLM) -> tuple[dict[str, dict[str, float]], dict[str, list[str]]]:
    """Per shape: each variant's yield after the warm-up; adaptive's choice over time."""
    yields: dict[str, dict[str, float]] = {}
    choices: dict[str, list[str]] = {}
    for shape, phases in SHAPES.items():
        yields[shape] = {}
        for variant in VARIANTS:
            seeds = SEEDS if variant == strategies.ADAPTIVE else SEEDS[:1]
            measured = [
                measure(redis_url, fake, variant, {"openai": phases}, seed=s)["openai"] for s in seeds
            ]
            yields[shape][variant] = sum(run.per_1000() for run in measured) / len(measured)
            if variant == strategies.ADAPTIVE:
                choices[shape] = _window_choice(measured[0])
    return yields, choices


def two_providers(redis_url: str, fake: FakeLLM) -> dict[str, tuple[str, Counter[str]]]:
    """openai facet-following and anthropic avoid-obeying in one adaptive run: per provider,
    its winning strategy and what it chose in the second half."""
    runs = measure(
        redis_url, fake, strategies.ADAPTIVE, {"openai": (FOLLOWING, None), "anthropic": (OBEYING, None)}
    )
    found = {}
    for api, run in runs.items():
        second_half = run.chosen[-1] - run.chosen[len(run.chosen) // 2 - 1]
        found[api] = (run.winning, second_half)
    return found


def run() -> dict[str, Any]:
    fake = FakeLLM().start()
    try:
        with EmbeddedRedis(unix_socket=False) as server:
            yields, choices = shapes_table(server.url, fake)
            pair = two_providers(server.url, fake)
    finally:
        fake.stop()
    write_section("novelty", _report(yields, choices, pair))
    return {"yields": yields, "two_providers": {api: best for api, (best, _) in pair.items()}}


def _report(
    yields: dict[str, dict[str, float]],
    choices: dict[str, list[str]],
    pair: dict[str, tuple[str, Counter[str]]],
) -> str:
    fixed_label: Callable[[str], str] = lambda v: f"`{v}`"  # noqa: E731
    head = (
        "| shape | "
        + " | ".join(fixed_label(v) for v in VARIANTS)
        + " | adaptive / best | adaptive / fixed |"
    )
    rows = [head, "| --- |" + " ---: |" * (len(VARIANTS) + 2)]
    for shape, found in yields.items():
        best = max(v for k, v in found.items() if k != strategies.ADAPTIVE)
        adaptive, fixed = found[strategies.ADAPTIVE], found[strategies.Strategy.FIXED.value]
        cells = " | ".join(f"{found[v]:.2f}" for v in VARIANTS)
        rows.append(f"| {shape} | {cells} | {adaptive / best:.2f}× | {adaptive / fixed:.2f}× |")
    windows = max(len(c) for c in choices.values())
    over_time = ["| requests | " + " | ".join(choices) + " |", "| ---: |" + " --- |" * len(choices)]
    for i in range(windows):
        cells = " | ".join(c[i] if i < len(c) else "" for c in choices.values())
        over_time.append(f"| {i * WINDOW + 1}–{(i + 1) * WINDOW} | {cells} |")
    pair_rows = "\n".join(
        f"| {api} | {shape} | `{best}` | "
        + ", ".join(f"{name} {count}" for name, count in chosen.most_common())
        + " |"
        for (api, (best, chosen)), shape in zip(
            pair.items(), ("facet-following", "avoid-obeying"), strict=True
        )
    )
    return f"""## Prompt strategies: unique attributes per 1,000 tokens, by model shape

A fake model over real HTTP (the official SDKs) answers {BATCH} names per request from a
vocabulary of {VOCABULARY:,} in {FACETS} facets, skewed (its favourites come up again and
again, so it saturates); unprompted it writes the popular facets far more often. Usage
counts the real prompt and answer (4 characters a token), so avoid lists, focus lines and
the one request for the facets are paid for. Its shapes:

- **facet-following**: lists the topic's facets when asked, writes the facet a prompt
  focuses on, and mostly obeys "do not repeat these" lists (they hardly pay: its known
  names are spread over hundreds);
- **avoid-obeying**: reads a focus line as if it were not there; a list makes it leave its
  favourites (names and facets) for the less known ones, as a model that reads the list as
  "these are known, go further";
- **deaf**: follows neither (every line a strategy adds is pure cost);
- **changing**: focus-following and deaf to lists for the first half, then the avoid-obeying
  model.

{REQUESTS} requests per variant and shape, one cycle at a time, bloom filter on; the yield is
counted after the first {WARMUP} requests; `adaptive` is the mean of {len(SEEDS)} runs (seeds
{", ".join(map(str, SEEDS))}). Avoid lists: `avoid` and `facets-avoid` 60 tokens
(`PRODUCER_AVOID_TOKENS`), `avoid-long` 300 (`PRODUCER_AVOID_TOKENS_LONG`).

New attributes per 1,000 tokens after the warm-up:

{chr(10).join(rows)}

`adaptive`'s choice over time (the strategy it chose most in each window of {WINDOW}
requests, first run; the changing shape changes after request {REQUESTS // 2}):

{chr(10).join(over_time)}

Two providers in one adaptive run ({REQUESTS} requests each; openai and anthropic, each
through its own SDK): the strategy each shows as winning at the end (`producer status`,
`/metrics`) and what each chose in the second half of the run.

| provider | shape | winning | chosen in the second half |
| --- | --- | --- | --- |
{pair_rows}"""


if __name__ == "__main__":
    print(run())
