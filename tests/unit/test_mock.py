"""The mock provider: a topic-seeded vocabulary with realistic repeats."""

from __future__ import annotations

import random

import pytest

from producer_tasks.bloomhash import normalize
from producer_tasks.errors import ProviderUnavailableError
from producer_tasks.generation import mock
from producer_tasks.generation.parsing import parse_response


def test_vocabulary_is_seeded_by_topic_and_distinct() -> None:
    cheese = [mock.attribute("cheese", i) for i in range(5000)]
    assert cheese == [mock.attribute("cheese", i) for i in range(5000)]
    assert len({normalize(a) for a in cheese}) > 4950
    towns = {mock.attribute("towns", i) for i in range(100)}
    assert len(towns & set(cheese[:100])) < 5


def test_answers_parse_to_the_requested_batch_without_bogus_items() -> None:
    rng = random.Random(2)
    for _ in range(50):
        response = mock.generate(
            prompt="List 10 cheese",
            topic="cheese",
            batch_size=10,
            latency_ms=0,
            failure_rate=0,
            vocabulary=5000,
            rng=rng,
        )
        items = parse_response(response.content, batch_size=10)
        assert 8 <= len(items) <= 10  # repeats inside a batch are possible
        assert not any("here are" in i.lower() or "mock response" in i.lower() for i in items)
        assert response.prompt_tokens > 0 and response.completion_tokens > 0


def test_repeat_rate_is_realistic() -> None:
    rng = random.Random(3)
    seen: set[str] = set()
    drawn = 0
    for _ in range(100):
        for item in mock.draw("cheese", 20, vocabulary=1000, rng=rng):
            drawn += 1
            seen.add(item)
    repeat_rate = 1 - len(seen) / drawn
    assert 0.3 < repeat_rate < 0.9  # 2,000 draws from 1,000 names, skewed: many repeats


def test_failure_rate_and_latency() -> None:
    rng = random.Random(4)
    failures = 0
    for _ in range(400):
        try:
            mock.generate(
                prompt="p", topic="t", batch_size=3, latency_ms=0, failure_rate=0.25, vocabulary=100, rng=rng
            )
        except ProviderUnavailableError:
            failures += 1
    assert 60 < failures < 140
    with pytest.raises(ProviderUnavailableError):
        mock.health_check(failure_rate=1.0)
    response = mock.generate(
        prompt="p", topic="t", batch_size=3, latency_ms=30, failure_rate=0, vocabulary=100, rng=rng
    )
    assert response.response_time_ms >= 20


def test_the_mock_lists_facets_when_asked_and_writes_the_focused_facets_names() -> None:
    import random

    from producer_tasks.generation import mock
    from producer_tasks.generation.prompt import build_prompt, facets_prompt

    rng = random.Random(5)
    names = mock.answer(facets_prompt("cheese", 4), "cheese", 4, vocabulary=400, facets=4, rng=rng)
    assert names == [mock.facet_name("cheese", k) for k in range(4)] and len(set(names)) == 4
    block = {mock.attribute("cheese", i) for i in range(200, 300)}  # facet 2 of 4: the third 100
    focused = build_prompt("List {topic}", topic="cheese", batch_size=50, facet=names[2])
    assert set(mock.answer(focused, "cheese", 50, vocabulary=400, facets=4, rng=rng)) <= block
    # no facets known (or a facet it never named): names of the whole topic
    unknown = build_prompt("List {topic}", topic="cheese", batch_size=50, facet="Moon cheese")
    drawn = mock.answer(unknown, "cheese", 200, vocabulary=400, facets=4, rng=rng)
    assert not set(drawn) <= block
