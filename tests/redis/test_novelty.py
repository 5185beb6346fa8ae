"""Novelty prompts against a real Redis (Celery eager): the record, the prompt, the topic."""

from __future__ import annotations

import json
from typing import Any

import pytest

from producer_tasks.generation.cycle import Outcome
from producer_tasks.generation.prompt import AVOID_HEADER, estimate_tokens
from producer_tasks.runtime import Runtime
from producer_tasks.state import novelty
from tests.conftest import RecordingDispatcher, make_runtime, provider_env
from tests.fakellm import FakeLLM
from tests.redis.eager import begin, run_next, start

pytestmark = pytest.mark.usefixtures("eager")


def prompts(fake: FakeLLM) -> list[str]:
    return [str(r.body["messages"][0]["content"]) for r in fake.requests if "/chat" in r.path]


def running(
    redis_url: str, installed_runtime: Any, fake: FakeLLM, **env: str
) -> tuple[Runtime, RecordingDispatcher]:
    """One lane on a fake model with few favourites (it soon repeats itself), bloom filter on,
    novelty prompts unless ``env`` says otherwise."""
    fake.set("openai", vocabulary=30)
    base = {
        "PRODUCER_CONCURRENCY": "1",
        "PRODUCER_BLOOM_FILTER": "true",
        "PRODUCER_PROMPT_STRATEGY": "novelty",
    }
    rt, rec = make_runtime(redis_url, **{**base, **env}, **provider_env(fake))
    installed_runtime(rt)
    begin(rt, "openai")
    return rt, rec


def test_prompts_list_what_is_known_within_budget_and_forget_it_with_the_topic(
    redis_url: str, installed_runtime: Any, fake_llm: FakeLLM
) -> None:
    rt, rec = running(redis_url, installed_runtime, fake_llm, PRODUCER_AVOID_TOKENS="60", PRODUCER_FACETS="0")
    for _ in range(6):
        assert run_next(rec) in (Outcome.DELIVERED, Outcome.EMPTY)
    first, *later = prompts(fake_llm)
    assert AVOID_HEADER not in first  # nothing known yet
    assert all(AVOID_HEADER in p for p in later)
    for prompt in later:
        section = prompt[prompt.index(AVOID_HEADER) :]
        assert estimate_tokens(section) <= 60  # never beyond PRODUCER_AVOID_TOKENS
        assert prompt.startswith("List 10 cheese\n\n")  # the orchestrator's template, unchanged
    most, others = novelty.avoid_candidates(rt.fleet)
    assert most  # repeats were counted: the model's favourites
    assert rt.fleet.redis.zscore(rt.fleet.keys.known, most[0]) >= 1
    known = set(most) | set(others)
    delivered = {a for _, fields in rt.fleet.redis.xrange(rt.fleet.keys.batches) for a in _attributes(fields)}
    assert delivered and delivered <= known  # every delivered item is in the record (30 < its cap)
    # a new topic: the record is dropped, and a late cycle of the old topic records nothing
    start(rt, weights={"openai": 1.0}, topic="towns")
    assert not rt.fleet.redis.exists(rt.fleet.keys.known)
    old_epoch = rt.fleet.read_state().epoch - 1
    rt.fleet.run(novelty.remember_call(rt.fleet, epoch=old_epoch, delivered=["Brie"], repeated=["Gouda"]))
    assert not rt.fleet.redis.exists(rt.fleet.keys.known)
    rec.sent.clear()
    rt.lanes.reconcile()
    run_next(rec)
    assert AVOID_HEADER not in prompts(fake_llm)[-1]


def test_fixed_strategy_sends_the_template_only(
    redis_url: str, installed_runtime: Any, fake_llm: FakeLLM
) -> None:
    rt, rec = running(redis_url, installed_runtime, fake_llm, PRODUCER_PROMPT_STRATEGY="fixed")
    for _ in range(3):
        run_next(rec)
    assert len(set(prompts(fake_llm))) == 1 and AVOID_HEADER not in prompts(fake_llm)[0]
    assert not rt.fleet.redis.exists(rt.fleet.keys.known)


def _attributes(fields: dict[str, str]) -> list[str]:
    return list(json.loads(fields["data"])["attributes"])


def test_facets_are_asked_for_once_per_topic_and_each_later_prompt_focuses_on_one(
    redis_url: str, installed_runtime: Any, fake_llm: FakeLLM
) -> None:
    from producer_tasks.generation.prompt import FACETS_MARK, focus_of

    rt, rec = running(redis_url, installed_runtime, fake_llm, PRODUCER_FACETS="5", PRODUCER_AVOID_TOKENS="0")
    fake_llm.set("openai", vocabulary=500, facets=5, topic="cheese")
    keys = rt.fleet.keys
    assert run_next(rec) == Outcome.EMPTY  # the first cycle asks for the facets: nothing to deliver
    (asked,) = prompts(fake_llm)
    assert FACETS_MARK in asked and "cheese" in asked
    facets = rt.fleet.redis.hgetall(keys.facets)
    assert len(facets) == 5 and set(facets.values()) == {"0"}
    assert rt.fleet.redis.xlen(keys.batches) == 0
    assert not novelty.ask_for_facets(rt.fleet, rt.fleet.read_state().epoch)  # asked once per topic
    for _ in range(12):
        assert run_next(rec) in (Outcome.DELIVERED, Outcome.EMPTY)
    later = prompts(fake_llm)[1:]
    assert len(later) == 12 and all(p.startswith("List 10 cheese\n\n") for p in later)
    assert all(focus_of(p) in facets for p in later)  # every one focuses on a facet the model named
    cycles = {name: int(n) for name, n in rt.fleet.redis.hgetall(keys.facets).items()}
    brought = {name: int(n) for name, n in rt.fleet.redis.hgetall(keys.facet_yield).items()}
    assert sum(cycles.values()) == 12
    assert sum(brought.values()) == rt.fleet.read_counters().get("attributes_appended", 0) > 0
    assert not rt.fleet.redis.exists(keys.known)  # no avoid list (PRODUCER_AVOID_TOKENS=0): not kept
    # a new topic: its facets are asked for again, the old ones are gone
    start(rt, weights={"openai": 1.0}, topic="towns")
    assert not any(rt.fleet.redis.exists(k) for k in (keys.facets, keys.facet_yield, keys.facets_asked))
    rec.sent.clear()
    rt.lanes.reconcile()
    run_next(rec)
    assert FACETS_MARK in prompts(fake_llm)[-1] and "towns" in prompts(fake_llm)[-1]


def test_a_large_delivery_is_recorded_whole_and_the_record_keeps_its_cap(
    redis_url: str, installed_runtime: Any, fake_llm: FakeLLM
) -> None:
    """The record takes a cycle's delivered items in one ZADD per 500 (Lua's unpack has a
    limit): 1,203 items all recorded, new ones at 0, known ones keep their repeat count;
    beyond the cap the least repeated go first."""
    rt, _ = running(redis_url, installed_runtime, fake_llm, PRODUCER_FACETS="0")
    epoch = rt.fleet.read_state().epoch
    known, items = rt.fleet.keys.known, [f"cheese {i}" for i in range(1203)]
    rt.fleet.run(novelty.remember_call(rt.fleet, epoch=epoch, delivered=items[:2], repeated=items[:1]))
    assert rt.fleet.run(novelty.remember_call(rt.fleet, epoch=epoch, delivered=items, repeated=[])) == [1203]
    assert rt.fleet.redis.zcard(known) == 1203
    assert rt.fleet.redis.zscore(known, items[0]) == 1 and rt.fleet.redis.zscore(known, items[1202]) == 0
    more = [f"cheese {i}" for i in range(1203, 1203 + novelty.CAP)]
    rt.fleet.run(novelty.remember_call(rt.fleet, epoch=epoch, delivered=more, repeated=[]))
    assert rt.fleet.redis.zcard(known) == novelty.CAP
    assert rt.fleet.redis.zscore(known, items[0]) == 1  # the repeated one stays
