"""Every model answer is bounded before it is held (issue 30), through the official SDKs over
real HTTP against the fake server: an answer beyond PRODUCER_MAX_RESPONSE_BYTES is a provider
error after reading at most the cap (memory measured), and a server that drips a byte at a
time is cut at the request timeout, which bounds the whole call, not each read."""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Iterator

import pytest

from producer_tasks.errors import BadResponseError, ProviderTimeoutError
from producer_tasks.generation import providers
from producer_tasks.generation.providers import Clients, GenerationRequest
from producer_tasks.settings import load_settings
from tests.conftest import provider_env
from tests.fakellm import FakeLLM

pytestmark = pytest.mark.adversarial
APIS = ["openai", "anthropic"]
REQUEST = GenerationRequest(
    prompt="List 10 cheeses", topic="cheese", temperature=0.7, max_tokens=200, batch_size=10
)
CAP = 1 << 20


@pytest.fixture
def clients(fake_llm: FakeLLM) -> Iterator[Clients]:
    settings = load_settings(
        provider_env(fake_llm, PRODUCER_REQUEST_TIMEOUT_S="2", PRODUCER_MAX_RESPONSE_BYTES=str(CAP))
    )
    made = Clients(settings)
    yield made
    made.close()


@pytest.mark.parametrize("api", APIS)
def test_a_130_mb_answer_is_dropped_after_the_cap(api: str, fake_llm: FakeLLM, clients: Clients) -> None:
    assert providers.generate(clients, api, REQUEST).content  # the SDK imported and its client made
    fake_llm.set(api, mode="huge", size=130 * 1024 * 1024)
    tracemalloc.start()
    try:
        with pytest.raises(BadResponseError, match="PRODUCER_MAX_RESPONSE_BYTES"):
            providers.generate(clients, api, REQUEST)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= CAP + 20 * 1024 * 1024, peak  # the cap and 20 MB, not the 130 MB answer
    fake_llm.set(api)  # and the next answer is read as usual
    assert providers.generate(clients, api, REQUEST).content


@pytest.mark.parametrize("api", APIS)
def test_a_dripping_server_is_cut_at_the_request_timeout(
    api: str, fake_llm: FakeLLM, clients: Clients
) -> None:
    fake_llm.set(api, mode="drip", drip_s=0.2)  # a normal answer, a byte every 0.2 s: a minute or more
    started = time.monotonic()
    with pytest.raises(ProviderTimeoutError):
        providers.generate(clients, api, REQUEST)
    took = time.monotonic() - started
    assert 1.0 <= took <= 3.0, took  # the 2 s timeout ± 1 s, whatever each read got
