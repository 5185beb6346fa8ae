"""Adaptive prompt strategies against a real Redis (Celery eager), the official SDKs over
real HTTP against the fake model: what each strategy brought is recorded per provider and
topic in the delivery's round trip, dropped with the topic, and two providers of different
shapes in one run each settle on their own strategy, as status, summary and metrics show."""

from __future__ import annotations

import random
import sys
from typing import Any

import pytest

from orchestrator_bridge.cli.progress import summary_table
from orchestrator_bridge.cli.status import render
from producer_tasks.generation.strategy import Strategy, field_name
from producer_tasks.state import novelty
from producer_tasks.state.status import snapshot
from tests.conftest import make_runtime, provider_env
from tests.fakellm import FakeLLM
from tests.redis.eager import run_next, serve, start
from tests.redis.test_monitoring import scrape

pytestmark = pytest.mark.usefixtures("eager")
MODEL = {
    "vocabulary": 3000,
    "skew": 5.0,
    "batch": 20,
    "topic": "cheese",
    "usage_from_text": True,
    "facets": 20,
}
FOLLOWS_FOCUS = MODEL | {"obey": 0.9, "follow_focus": True}
OBEYS_LISTS = MODEL | {"obey": 0.95, "follow_focus": False, "listed_skew": 1.0}
NO_PRICES = {
    f"PRODUCER_{api}_PRICE_{kind}_PER_MTOK": "0"
    for api in ("OPENAI", "ANTHROPIC")
    for kind in ("INPUT", "OUTPUT")
}


def test_two_providers_of_different_shapes_each_settle_on_their_own_strategy(
    redis_url: str, installed_runtime: Any, fake_llm: FakeLLM
) -> None:
    fake_llm.set("openai", **FOLLOWS_FOCUS)
    fake_llm.set("anthropic", **OBEYS_LISTS)
    rt, rec = make_runtime(
        redis_url,
        PRODUCER_PROMPT_STRATEGY="adaptive",
        PRODUCER_CONCURRENCY="2",
        **NO_PRICES,
        **provider_env(fake_llm),
    )
    rt.rng.seed(7)
    fake_llm.rng = random.Random(7)
    installed_runtime(rt)
    serve(rt, "openai", "anthropic")
    before = {p: rt.fleet.read_stats(p) for p in ("openai", "anthropic")}
    start(rt, weights={"openai": 1.0, "anthropic": 1.0}, batch_size=20)
    rt.lanes.reconcile()
    for _ in range(500):  # 250 cycles a provider
        run_next(rec)
    status = snapshot(rt.fleet)
    openai, anthropic = status.providers["openai"], status.providers["anthropic"]
    assert openai.strategy == Strategy.FACETS, openai.strategies  # focus lines pay on this one
    assert anthropic.strategy == Strategy.AVOID, anthropic.strategies  # lists pay on that one
    for view in (openai, anthropic):
        best = view.strategies[view.strategy]
        assert best.tried > sum(s.tried for s in view.strategies.values()) / 2  # most cycles ran it
        assert best.per_1000_tokens > view.strategies[Strategy.FIXED].per_1000_tokens
    text = render(status)
    assert "openai: prompt strategy facets winning; new attributes per 1,000 tokens: facets " in text
    assert "anthropic: prompt strategy avoid winning" in text
    summary = summary_table(rt.fleet, ["openai", "anthropic"], before, stream=sys.stderr)
    assert "openai: prompt strategy facets winning" in summary
    metrics = scrape(rt)
    winning = {(s["provider"], s["strategy"]) for s in metrics["producer_strategy_winning"] if s}
    assert {("openai", "facets"), ("anthropic", "avoid")} <= winning
    assert any(s["strategy"] == "avoid" for s in metrics["producer_strategy_cycles_total"])


def test_the_record_is_written_with_the_delivery_and_dropped_with_the_topic(
    redis_url: str, installed_runtime: Any, fake_llm: FakeLLM
) -> None:
    fake_llm.set("openai", **FOLLOWS_FOCUS)
    rt, rec = make_runtime(redis_url, PRODUCER_PROMPT_STRATEGY="avoid", **provider_env(fake_llm))
    installed_runtime(rt)
    serve(rt, "openai")
    start(rt, weights={"openai": 1.0})
    rt.lanes.reconcile()
    for _ in range(3):
        run_next(rec)
    record = novelty.read_strategies(rt.fleet)
    assert record[field_name("openai", Strategy.AVOID, "tried")] == "3"
    tokens = float(record[field_name("openai", Strategy.AVOID, "tokens")])
    assert 0 < tokens <= rt.fleet.read_stats("openai").tokens_used  # discounted: at most what was paid
    old_epoch = rt.fleet.read_state().epoch
    rt.fleet.run(  # a cycle of an older topic records nothing
        novelty.remember_call(
            rt.fleet,
            epoch=old_epoch - 1,
            delivered=[],
            repeated=[],
            spent=novelty.Spent("openai", "fixed", 10, 10.0, ("fixed",)),
        )
    )
    assert field_name("openai", Strategy.FIXED, "tried") not in novelty.read_strategies(rt.fleet)
    assert rt.fleet.redis.pttl(rt.fleet.keys.strategy_yield) > 0  # an abandoned topic's goes by itself
    start(rt, weights={"openai": 1.0}, topic="wine")
    assert novelty.read_strategies(rt.fleet) == {}
