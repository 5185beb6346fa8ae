"""Shared fixtures: the fake LLM HTTP server (and, for fleet tests, a real redis-server)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakellm import API_KEY, FakeLLM


@pytest.fixture
def fake_llm() -> Iterator[FakeLLM]:
    fake = FakeLLM().start()
    try:
        yield fake
    finally:
        fake.stop()


def provider_env(fake: FakeLLM, **extra: str) -> dict[str, str]:
    """Environment pointing both SDKs at the fake server."""
    env = {
        "OPENAI_API_KEY": API_KEY,
        "OPENAI_BASE_URL": f"{fake.url}/v1",
        "ANTHROPIC_API_KEY": API_KEY,
        "ANTHROPIC_BASE_URL": fake.url,
    }
    env.update(extra)
    return env
