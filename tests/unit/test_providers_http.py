"""The official openai and anthropic SDKs over real HTTP against the local fake server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from producer_tasks.errors import (
    BadResponseError,
    NotRetryableError,
    ProviderNotConfiguredError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RateLimitedError,
)
from producer_tasks.generation import providers
from producer_tasks.generation.parsing import parse_response
from producer_tasks.generation.providers import Clients, GenerationRequest, retry_after_s
from producer_tasks.settings import load_settings
from tests.conftest import provider_env, write_providers_file
from tests.fakellm import API_KEY, FakeLLM

APIS = ["openai", "anthropic"]
REQUEST = GenerationRequest(
    prompt="List 10 cheeses", topic="cheese", temperature=0.7, max_tokens=200, batch_size=10
)


@pytest.fixture
def clients(fake_llm: FakeLLM) -> Iterator[Clients]:
    settings = load_settings(provider_env(fake_llm, PRODUCER_REQUEST_TIMEOUT_S="0.5"))
    made = Clients(settings)
    yield made
    made.close()


@pytest.mark.parametrize("api", APIS)
def test_success_with_usage(api: str, fake_llm: FakeLLM, clients: Clients) -> None:
    response = providers.generate(clients, api, REQUEST)
    assert len(parse_response(response.content, batch_size=10)) >= 5
    expected = (11, 42) if api == "openai" else (13, 40)
    assert (response.prompt_tokens, response.completion_tokens) == expected
    assert response.tokens_used == sum(expected)
    assert response.response_time_ms > 0
    (request,) = fake_llm.requests
    assert request.api == api
    assert request.body["max_tokens"] == 200
    assert request.body["messages"][0]["content"] == "List 10 cheeses"


@pytest.mark.parametrize("api", APIS)
def test_429_with_retry_after_is_mapped_with_its_delay(api: str, fake_llm: FakeLLM, clients: Clients) -> None:
    fake_llm.set(api, mode="status", status=429, retry_after="7")
    with pytest.raises(RateLimitedError) as info:
        providers.generate(clients, api, REQUEST)
    assert info.value.retry_after_s == 7.0
    assert info.value.provider == api
    assert fake_llm.count(api) == 1  # the SDK did not retry on its own


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("status", [500, 503, 529])
def test_server_errors_are_unavailable(api: str, status: int, fake_llm: FakeLLM, clients: Clients) -> None:
    fake_llm.set(api, mode="status", status=status)
    with pytest.raises(ProviderUnavailableError, match=f"HTTP {status}"):
        providers.generate(clients, api, REQUEST)
    assert fake_llm.count(api) == 1


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("mode", ["html", "garbage", "empty", "no_choices"])
def test_bad_bodies_with_status_200(api: str, mode: str, fake_llm: FakeLLM, clients: Clients) -> None:
    fake_llm.set(api, mode=mode)
    with pytest.raises(BadResponseError):
        providers.generate(clients, api, REQUEST)


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize(
    "body",
    [
        "[1, 2]",
        '{"object": "error", "message": "overloaded"}',
        '{"choices": "none"}',
        '{"choices": [42]}',
        '{"choices": [{"message": {"content": null}}]}',
        '{"content": [{"type": "text", "text": 5}], "usage": "many"}',
        '{"choices": [{"message": {"content": "1. Brie"}}], "usage": {"prompt_tokens": "x"}}',
    ],
)
def test_json_that_is_not_an_answer(api: str, body: str, fake_llm: FakeLLM, clients: Clients) -> None:
    fake_llm.set(api, mode="raw", text=body)
    with pytest.raises(BadResponseError):
        providers.generate(clients, api, REQUEST)


@pytest.mark.parametrize("api", APIS)
def test_a_hang_fires_our_timeout(api: str, fake_llm: FakeLLM, clients: Clients) -> None:
    fake_llm.set(api, mode="hang", hang_s=30)
    started = time.monotonic()
    with pytest.raises(ProviderTimeoutError):
        providers.generate(clients, api, REQUEST)
    assert time.monotonic() - started < 10  # 0.5 s timeout, generous bound for a slow CI


@pytest.mark.parametrize("api", APIS)
def test_401_is_not_retryable(api: str, fake_llm: FakeLLM) -> None:
    env = provider_env(fake_llm)
    env[f"{api.upper()}_API_KEY"] = "wrong-key"
    with pytest.raises(NotRetryableError, match="HTTP 401") as info:
        providers.generate(Clients(load_settings(env)), api, REQUEST)
    assert not info.value.retryable
    assert "wrong-key" not in str(info.value)


@pytest.mark.parametrize("api", APIS)
def test_health_check_is_a_free_model_lookup(api: str, fake_llm: FakeLLM, clients: Clients) -> None:
    providers.health_check(clients, api)
    (request,) = fake_llm.requests
    assert "/models/" in request.path
    fake_llm.set(api, mode="status", status=503)
    with pytest.raises(ProviderUnavailableError):
        providers.health_check(clients, api)


@pytest.mark.parametrize("api", APIS)
def test_health_check_completion_mode_spends_one_token(api: str, fake_llm: FakeLLM) -> None:
    clients = Clients(load_settings(provider_env(fake_llm, PRODUCER_HEALTH_CHECK="completion")))
    providers.health_check(clients, api)
    (request,) = fake_llm.requests
    assert request.body["max_tokens"] == 1


def test_connection_refused_is_unavailable() -> None:
    env = {"OPENAI_API_KEY": "k", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}
    with pytest.raises(ProviderUnavailableError, match="connection failed"):
        providers.generate(Clients(load_settings(env)), "openai", REQUEST)


def test_unconfigured_provider() -> None:
    with pytest.raises(ProviderNotConfiguredError):
        providers.generate(Clients(load_settings({})), "openai", REQUEST)
    with pytest.raises(ProviderNotConfiguredError):
        providers.generate(Clients(load_settings({})), "llama", REQUEST)


def test_mock_needs_no_network() -> None:
    clients = Clients(load_settings({"PRODUCER_MOCK_LATENCY_MS": "0"}))
    response = providers.generate(clients, "mock", REQUEST)
    assert parse_response(response.content, batch_size=10)
    providers.health_check(clients, "mock")


@pytest.mark.adversarial
def test_retry_after_forms() -> None:
    assert retry_after_s({"retry-after": "3"}) == 3.0
    assert retry_after_s({"retry-after-ms": "1500"}) == 1.5
    assert retry_after_s({"retry-after": "soon"}) is None
    assert retry_after_s({"retry-after": "1e12"}) == 1e12  # unclamped here: the cycle clamps
    assert retry_after_s({"retry-after": "inf"}) == float("inf")
    assert retry_after_s({"retry-after": "nan"}) is None
    assert retry_after_s({"retry-after": "9" * 5000}) == float("9" * 32)  # 32 characters read at most
    assert retry_after_s({}) is None
    future = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 25 < (retry_after_s({"retry-after": future}) or 0) <= 31


def test_named_providers_call_their_own_endpoint_model_and_key(fake_llm: FakeLLM, tmp_path: Path) -> None:
    """Two named providers on one server (different models), one on a local server that needs
    no key, and a named Anthropic provider: each call carries its provider's model."""
    local = FakeLLM(require_key=False).start()
    try:
        env = write_providers_file(
            tmp_path / "providers.toml",
            {
                "llama-a": {
                    "kind": "openai",
                    "base_url": f"{fake_llm.url}/v1",
                    "model": "llama-8b",
                    "api_key_env": "SHARED_KEY",
                },
                "qwen-b": {
                    "kind": "openai",
                    "base_url": f"{fake_llm.url}/v1",
                    "model": "qwen-7b",
                    "api_key_env": "SHARED_KEY",
                    "timeout_s": 0.3,
                },
                "local": {"kind": "openai-compatible", "base_url": f"{local.url}/v1", "model": "tiny"},
                "claude": {
                    "kind": "anthropic",
                    "base_url": fake_llm.url,
                    "model": "claude-x",
                    "api_key_env": "SHARED_KEY",
                },
            },
        )
        clients = Clients(load_settings({**env, "SHARED_KEY": API_KEY}))
        try:
            for name in ("llama-a", "qwen-b", "claude"):
                assert parse_response(providers.generate(clients, name, REQUEST).content, batch_size=10)
            assert [r.body["model"] for r in fake_llm.requests] == ["llama-8b", "qwen-7b", "claude-x"]
            assert providers.generate(clients, "local", REQUEST).prompt_tokens == 11
            assert local.requests[0].body["model"] == "tiny"
            providers.health_check(clients, "qwen-b")
            assert fake_llm.requests[-1].path.endswith("/models/qwen-7b")
            fake_llm.set("openai", latency_ms=1000)  # qwen-b's own timeout (0.3 s), not the global 60 s
            with pytest.raises(ProviderTimeoutError) as timed_out:
                providers.generate(clients, "qwen-b", REQUEST)
            assert timed_out.value.provider == "qwen-b"
        finally:
            clients.close()
        without_key = Clients(load_settings(env))  # SHARED_KEY unset in this process
        with pytest.raises(ProviderNotConfiguredError, match="llama-a"):
            providers.generate(without_key, "llama-a", REQUEST)
    finally:
        local.stop()


@pytest.mark.parametrize("api", APIS)
def test_each_call_borrows_an_idle_client_and_its_kept_alive_connection(api: str, fake_llm: FakeLLM) -> None:
    """One client per call in flight (httpx scans a shared pool on every request): 6 threads
    making 3 calls each use 6 clients and 6 connections; close() closes them all."""
    import threading

    clients = Clients(load_settings(provider_env(fake_llm)))
    barrier = threading.Barrier(6)

    def calls() -> None:
        barrier.wait()
        for _ in range(3):
            providers.generate(clients, api, REQUEST)

    threads = [threading.Thread(target=calls) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(fake_llm.requests) == 18
    assert len({r.peer for r in fake_llm.requests}) == 6  # one connection per client, kept alive
    made = list(clients._every)
    assert len({id(client) for client in made}) == 6
    clients.close()
    assert all(client.is_closed() for client in made)
    providers.generate(clients, api, REQUEST)  # after close(): a new client, not a closed one
    assert len(fake_llm.requests) == 19


def test_short_lived_threads_reuse_one_client(fake_llm: FakeLLM) -> None:
    """A thread (or a gevent greenlet: one per task) that ends leaves its client to the next
    call: 10 threads one after another make one client and one connection, not ten."""
    import threading

    clients = Clients(load_settings(provider_env(fake_llm)))
    for _ in range(10):
        thread = threading.Thread(target=providers.generate, args=(clients, "openai", REQUEST))
        thread.start()
        thread.join(30)
    assert len(fake_llm.requests) == 10
    assert len(clients._every) == 1 and len({r.peer for r in fake_llm.requests}) == 1
    clients.close()


@pytest.mark.adversarial
@pytest.mark.parametrize("api", APIS)
def test_an_answer_nested_too_deeply_is_a_provider_error(api: str, fake_llm: FakeLLM, clients: Clients) -> None:
    """200,000 '[' through the real SDK: its JSON parser recurses past Python's limit; that is
    a BadResponseError like any unreadable answer, not a RecursionError in the worker."""
    fake_llm.set(api, mode="raw", text="[" * 200_000)
    with pytest.raises(BadResponseError, match="nested too deeply"):
        providers.generate(clients, api, REQUEST)
