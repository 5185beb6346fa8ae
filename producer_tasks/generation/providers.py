"""Provider calls: one direct function per kind of provider, no class hierarchy.

``generate(clients, provider, request)`` and ``health_check(clients, provider)`` look up the
named provider's spec (``producer_tasks.catalog``) and dispatch on its kind to
``generate_openai`` / ``generate_anthropic`` / ``generate_mock``. The official SDKs are
used with their own retries off (``max_retries=0``, our cycle owns retries) and a
timeout; every SDK or HTTP failure is translated here into ``producer_tasks.errors``.
Each SDK is imported when its provider is first used (they take seconds to import): a
worker serving ``mock`` never loads them, one serving ``openai`` never loads Anthropic's.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

from producer_tasks.catalog import ProviderSpec
from producer_tasks.errors import (
    BadResponseError,
    NotRetryableError,
    ProviderError,
    ProviderNotConfiguredError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RateLimitedError,
)
from producer_tasks.generation import mock
from producer_tasks.generation.parsing import clean_text
from producer_tasks.printable import quoted
from producer_tasks.records import LLMResponse
from producer_tasks.settings import Settings

if TYPE_CHECKING:
    import anthropic
    import openai

log = logging.getLogger(__name__)
HEALTH_CHECK_PROMPT = "Test"


def sdk(provider: str) -> ModuleType:
    """The official SDK of ``provider``, imported on first use."""
    if provider == "openai":
        import openai  # seconds to import: only where it is used

        return openai
    import anthropic

    return anthropic


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """What one cycle asks of a provider."""

    prompt: str
    topic: str
    temperature: float
    max_tokens: int
    batch_size: int


class Clients:
    """The SDK clients of one process, per named provider: each call borrows an idle one (or a
    new one when all are busy) and gives it back, so a process holds as many as it has calls
    in flight, each keeping its one connection alive, under threads and gevent alike.

    One shared client would hold every connection in one pool, which httpx scans (and polls
    each socket of) on every request and every response: at hundreds of calls in flight that
    cost more CPU than the call itself, and its keep-alive limit (100) made every call beyond
    it open a new connection (a TLS handshake against a real provider). The TLS context is
    created once per process and shared (creating one takes ~60 ms).
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._idle: dict[str, list[Any]] = {}
        self._every: list[Any] = []  # every client made (to close them)
        self._generation = 0  # close() starts a new one: clients borrowed before are not given back
        self._tls: Any = None

    @contextmanager
    def borrow(self, spec: ProviderSpec) -> Iterator[Any]:
        """``with clients.borrow(spec) as client:`` an idle SDK client of ``spec``, for one call."""
        with self._lock:
            idle = self._idle.setdefault(spec.name, [])
            client = idle.pop() if idle else None
            generation = self._generation
        if client is None:
            client = self._make(spec)
        try:
            yield client
        finally:
            with self._lock:
                if generation == self._generation:
                    self._idle.setdefault(spec.name, []).append(client)

    def _make(self, spec: ProviderSpec) -> Any:
        from producer_tasks.generation import httpstream  # imports httpcore, as the SDKs do

        if not spec.configured:
            raise ProviderNotConfiguredError(f"{spec.name}: {spec.api_key_env} is not set")
        module = sdk(spec.kind)
        factory = module.OpenAI if spec.kind == "openai" else module.Anthropic
        client = factory(
            # a local OpenAI-compatible server may need no key; the SDK wants one anyway
            api_key=spec.api_key.get_secret_value() if spec.api_key else "no-key-needed",
            base_url=spec.base_url,
            max_retries=0,
            timeout=spec.timeout_s or self.settings.request_timeout_s,
            http_client=httpstream.sdk_http_client(
                module, self._tls_context(), max_response_bytes=self.settings.max_response_bytes
            ),
        )
        with self._lock:
            self._every.append(client)
        return client

    def _tls_context(self) -> Any:
        with self._lock:
            if self._tls is None:
                self._tls = _httpx().create_ssl_context()  # as the SDK's own default: honours SSL_CERT_FILE
            return self._tls

    def openai(self, spec: ProviderSpec) -> AbstractContextManager[openai.OpenAI]:
        return self.borrow(spec)

    def anthropic(self, spec: ProviderSpec) -> AbstractContextManager[anthropic.Anthropic]:
        return self.borrow(spec)

    def close(self) -> None:
        with self._lock:
            self._generation += 1
            for client in self._every:
                client.close()
            self._every.clear()
            self._idle.clear()


# --- error translation ------------------------------------------------------------------


def _seconds(text: str, scale: float) -> float | None:
    """A non-negative number of seconds; "inf" and huge values become ``inf`` (the caller
    clamps to PRODUCER_MAX_RETRY_AFTER_S); NaN or not a number: None."""
    try:
        value = float(text[:32]) / scale
    except ValueError:
        return None
    return None if math.isnan(value) else max(0.0, value)


def retry_after_s(headers: Any) -> float | None:
    """Seconds from ``retry-after-ms`` / ``retry-after`` (seconds or an HTTP date), unclamped."""
    if headers is None:
        return None
    millis = headers.get("retry-after-ms")
    if millis and (seconds := _seconds(millis, 1000)) is not None:
        return seconds
    value = headers.get("retry-after")
    if not value:
        return None
    if (seconds := _seconds(value, 1)) is not None:
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _status_error(provider: str, status: int, message: str, headers: Any) -> ProviderError:
    text = f"HTTP {status}: {message[:200]}"
    if status == 429:
        return RateLimitedError(provider, text, retry_after_s=retry_after_s(headers))
    if status in (408, 409) or status >= 500:
        return ProviderUnavailableError(provider, text)
    return NotRetryableError(provider, text)


@contextmanager
def translated_errors(provider: str, kind: str) -> Iterator[None]:
    """Turn SDK and HTTP errors of both SDKs into our ProviderError types."""
    from producer_tasks.generation.httpstream import limit_behind  # imports httpcore, as the SDKs do

    module = sdk(kind)
    sdk_timeout = module.APITimeoutError
    sdk_connection = module.APIConnectionError
    sdk_status = module.APIStatusError
    sdk_validation = module.APIResponseValidationError
    try:
        yield
    except ProviderError:
        raise
    except sdk_timeout as exc:
        raise ProviderTimeoutError(provider, "request timed out") from exc
    except sdk_connection as exc:
        if (limit := limit_behind(exc)) is not None:  # the answer was too large: a bad answer
            raise BadResponseError(provider, str(limit)) from exc
        raise ProviderUnavailableError(provider, f"connection failed: {exc}") from exc
    except sdk_status as exc:
        raise _status_error(provider, exc.status_code, exc.message, exc.response.headers) from exc
    except sdk_validation as exc:
        raise BadResponseError(provider, f"response did not match the API: {exc}") from exc
    except (ValueError, UnicodeError) as exc:  # JSON and pydantic validation errors
        raise BadResponseError(
            provider, f"unreadable response ({type(exc).__name__}: {str(exc)[:200]})"
        ) from exc
    except RecursionError as exc:  # e.g. an answer of 200,000 '[': JSON nested beyond the parser
        raise BadResponseError(provider, "unreadable response (JSON nested too deeply)") from exc
    except Exception as exc:  # the transport's own limit, when the SDK does not wrap it
        if (limit := limit_behind(exc)) is None:
            raise
        raise BadResponseError(provider, str(limit)) from exc


# --- generation -------------------------------------------------------------------------


def generate_openai(clients: Clients, spec: ProviderSpec, request: GenerationRequest) -> LLMResponse:
    started = time.perf_counter()
    body = {
        "model": spec.model,
        "messages": [{"role": "user", "content": request.prompt}],
        "temperature": request.temperature,
        "max_tokens": request.max_tokens,
    }
    return _chat_completion(spec, _post(clients, spec, "/chat/completions", body), started=started)


def generate_anthropic(clients: Clients, spec: ProviderSpec, request: GenerationRequest) -> LLMResponse:
    started = time.perf_counter()
    # The Messages API of the current SDK takes no sampling temperature: the
    # orchestrator's temperature applies to OpenAI-compatible providers only.
    body = {
        "model": spec.model,
        "messages": [{"role": "user", "content": request.prompt}],
        "max_tokens": request.max_tokens,
    }
    return _message(spec, _post(clients, spec, "/v1/messages", body), started=started)


def _post(clients: Clients, spec: ProviderSpec, path: str, body: dict[str, Any]) -> Any:
    """The decoded JSON answer of one request through the SDK client's ``post`` (the SDKs'
    documented way to send a body as is): their auth, base URL, timeout and errors, without
    ``create``'s generic parameter transformation and response models, which cost a third of
    a call's CPU (4.8 → 3.3 ms; docs/benchmarks.md) and let a malformed answer through as a
    half-empty model. The answer is checked by ``_chat_completion`` / ``_message``."""
    with clients.borrow(spec) as client, translated_errors(spec.name, spec.kind):
        raw = client.post(path, body=body, cast_to=_httpx().Response)
        return json.loads(raw.content)


def _httpx() -> ModuleType:
    import httpx2  # the SDKs' HTTP client (imported with them)

    return httpx2


def _tokens(provider: str, usage: Any, *names: str) -> list[int]:
    usage = usage if isinstance(usage, dict) else {}
    counts = [usage.get(name, 0) for name in names]
    if not all(isinstance(count, int) for count in counts):
        raise BadResponseError(provider, f"unreadable usage: {quoted(str(usage))}")
    return counts


def _response(spec: ProviderSpec, content: str, tokens: list[int], model: Any, started: float) -> LLMResponse:
    return LLMResponse(
        content=content,
        prompt_tokens=tokens[0],
        completion_tokens=tokens[1],
        model=model if isinstance(model, str) and model else spec.model,
        response_time_ms=(time.perf_counter() - started) * 1000,
    )


def _chat_completion(spec: ProviderSpec, answer: Any, *, started: float) -> LLMResponse:
    """The response in a chat completion's JSON; a BadResponseError for anything else."""
    provider = spec.name
    if not isinstance(answer, dict) or answer.get("object", "chat.completion") != "chat.completion":
        raise BadResponseError(provider, f"not a chat completion: {quoted(str(answer))}")
    choices = answer.get("choices")
    if not isinstance(choices, list) or not choices:
        raise BadResponseError(provider, "response has no choices")
    message = choices[0].get("message") if isinstance(choices[0], dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, str):
        raise BadResponseError(provider, "response has no message content")
    tokens = _tokens(provider, answer.get("usage"), "prompt_tokens", "completion_tokens")
    return _response(spec, content, tokens, answer.get("model"), started)


def _message(spec: ProviderSpec, answer: Any, *, started: float) -> LLMResponse:
    """The response in a Messages API answer's JSON (its text blocks joined)."""
    provider = spec.name
    if not isinstance(answer, dict) or answer.get("type", "message") != "message":
        raise BadResponseError(provider, f"not a message: {quoted(str(answer))}")
    blocks = answer.get("content")
    if not isinstance(blocks, list):
        raise BadResponseError(provider, "response has no content")
    texts = [b.get("text") for b in blocks if isinstance(b, dict) and b.get("type") == "text"]
    strings = [t for t in texts if isinstance(t, str)]
    text = "".join(strings)
    if not text or len(strings) < len(texts):
        raise BadResponseError(provider, "response has no text content")
    tokens = _tokens(provider, answer.get("usage"), "input_tokens", "output_tokens")
    return _response(spec, text, tokens, answer.get("model"), started)


def generate_mock(clients: Clients, spec: ProviderSpec, request: GenerationRequest) -> LLMResponse:
    settings = clients.settings
    return mock.generate(
        prompt=request.prompt,
        topic=request.topic,
        batch_size=request.batch_size,
        latency_ms=settings.mock_latency_ms,
        failure_rate=settings.mock_failure_rate,
        vocabulary=settings.mock_vocabulary,
        facets=settings.facets,
    )


GENERATORS: dict[str, Callable[[Clients, ProviderSpec, GenerationRequest], LLMResponse]] = {
    "openai": generate_openai,
    "anthropic": generate_anthropic,
    "mock": generate_mock,
}


def _configured(clients: Clients, provider: str) -> ProviderSpec:
    spec = clients.settings.providers.get(provider)
    if spec is None or not spec.configured:
        raise ProviderNotConfiguredError(f"{provider}: not configured in this deployment")
    return spec


def generate(clients: Clients, provider: str, request: GenerationRequest) -> LLMResponse:
    """Call the named ``provider`` through its SDK (or the mock); our errors only."""
    spec = _configured(clients, provider)
    response = GENERATORS[spec.kind](clients, spec, request)
    return response.model_copy(update={"content": clean_text(response.content)})


# --- health checks ----------------------------------------------------------------------


def health_check_openai(clients: Clients, spec: ProviderSpec) -> None:
    with clients.openai(spec) as client, translated_errors(spec.name, spec.kind):
        if clients.settings.health_check == "completion":
            client.chat.completions.create(
                model=spec.model,
                messages=[{"role": "user", "content": HEALTH_CHECK_PROMPT}],
                max_tokens=1,
            )
        else:
            found = client.models.retrieve(spec.model)
            if not isinstance(found, sdk("openai").types.Model):
                raise BadResponseError(spec.name, "model lookup did not return a model")


def health_check_anthropic(clients: Clients, spec: ProviderSpec) -> None:
    with clients.anthropic(spec) as client, translated_errors(spec.name, spec.kind):
        if clients.settings.health_check == "completion":
            client.messages.create(
                model=spec.model,
                messages=[{"role": "user", "content": HEALTH_CHECK_PROMPT}],
                max_tokens=1,
            )
        else:
            found = client.models.retrieve(spec.model)
            if not isinstance(found, sdk("anthropic").types.ModelInfo):
                raise BadResponseError(spec.name, "model lookup did not return a model")


def health_check_mock(clients: Clients, spec: ProviderSpec) -> None:
    mock.health_check(failure_rate=clients.settings.mock_failure_rate)


HEALTH_CHECKS: dict[str, Callable[[Clients, ProviderSpec], None]] = {
    "openai": health_check_openai,
    "anthropic": health_check_anthropic,
    "mock": health_check_mock,
}


def health_check(clients: Clients, provider: str) -> None:
    """Raise a ProviderError when the provider does not answer; by default spends no tokens."""
    spec = _configured(clients, provider)
    HEALTH_CHECKS[spec.kind](clients, spec)
