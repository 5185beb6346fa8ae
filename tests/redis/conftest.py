"""Fixtures of the Redis-layer tests (a real redis-server; Celery in eager mode where asked)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from producer_tasks.runtime import Runtime
from producer_tasks.worker.app import app
from tests.conftest import RecordingDispatcher, make_runtime, provider_env
from tests.fakellm import FakeLLM
from tests.redis.eager import serve


@pytest.fixture
def eager() -> Iterator[None]:
    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True
    yield
    app.conf.task_always_eager = False
    app.conf.task_eager_propagates = False


@pytest.fixture
def mock_rt(redis_url: str, installed_runtime: Any) -> tuple[Runtime, RecordingDispatcher]:
    rt, rec = make_runtime(redis_url, PRODUCER_CONCURRENCY="2")
    installed_runtime(rt)
    serve(rt, "mock")
    return rt, rec


@pytest.fixture
def slow_openai(
    redis_url: str, installed_runtime: Any, fake_llm: FakeLLM
) -> tuple[Runtime, RecordingDispatcher]:
    rt, rec = make_runtime(redis_url, PRODUCER_CONCURRENCY="2", **provider_env(fake_llm))
    installed_runtime(rt)
    serve(rt, "openai")
    fake_llm.set("openai", latency_ms=400)
    return rt, rec
