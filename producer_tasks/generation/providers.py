"""Provider calls: one direct function per provider, no class hierarchy.

``generate(provider, request)`` and ``health_check(provider)`` dispatch to
``generate_openai`` / ``generate_anthropic`` / ``generate_mock``. The official SDKs are
used with their own retries off (``max_retries=0``, our cycle owns retries) and a
timeout; every SDK or HTTP failure is translated here into ``producer_tasks.errors``.
Each SDK is imported when its provider is first used (they take seconds to import): a
worker serving ``mock`` never loads them, one serving ``openai`` never loads Anthropic's.
"""

from __future__ import annotations

import email.utils
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

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
from producer_tasks.records import LLMResponse
from producer_tasks.settings import Settings

if TYPE_CHECKING:
    import anthropic
    import openai

log = logging.getLogger(__name__)
T = TypeVar("T")
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
    """The SDK clients of one process, created on first use (thread-safe)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._openai: openai.OpenAI | None = None
        self._anthropic: anthropic.Anthropic | None = None

    def openai(self) -> openai.OpenAI:
        with self._lock:
            if self._openai is None:
                key = self.settings.openai_api_key
                if key is None:
                    raise ProviderNotConfiguredError("openai: OPENAI_API_KEY is not set")
                self._openai = sdk("openai").OpenAI(
                    api_key=key.get_secret_value(),
                    base_url=self.settings.openai_base_url,
                    max_retries=0,
                    timeout=self.settings.request_timeout_s,
                )
            return self._openai

    def anthropic(self) -> anthropic.Anthropic:
        with self._lock:
            if self._anthropic is None:
                key = self.settings.anthropic_api_key
                if key is None:
                    raise ProviderNotConfiguredError("anthropic: ANTHROPIC_API_KEY is not set")
                self._anthropic = sdk("anthropic").Anthropic(
                    api_key=key.get_secret_value(),
                    base_url=self.settings.anthropic_base_url,
                    max_retries=0,
                    timeout=self.settings.request_timeout_s,
                )
            return self._anthropic

    def close(self) -> None:
        with self._lock:
            if self._openai is not None:
                self._openai.close()
            if self._anthropic is not None:
                self._anthropic.close()
            self._openai = self._anthropic = None


# --- error translation ------------------------------------------------------------------


def retry_after_s(headers: Any) -> float | None:
    """Seconds from ``retry-after-ms`` / ``retry-after`` (seconds or an HTTP date)."""
    if headers is None:
        return None
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
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
def translated_errors(provider: str) -> Iterator[None]:
    """Turn SDK and HTTP errors of both SDKs into our ProviderError types."""
    module = sdk(provider)
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
        raise ProviderUnavailableError(provider, f"connection failed: {exc}") from exc
    except sdk_status as exc:
        raise _status_error(provider, exc.status_code, exc.message, exc.response.headers) from exc
    except sdk_validation as exc:
        raise BadResponseError(provider, f"response did not match the API: {exc}") from exc
    except (ValueError, UnicodeError) as exc:  # JSON and pydantic validation errors
        raise BadResponseError(
            provider, f"unreadable response ({type(exc).__name__}: {str(exc)[:200]})"
        ) from exc


def _require(provider: str, value: T | None, what: str) -> T:
    if value is None:
        raise BadResponseError(provider, f"response has no {what}")
    return value


# --- generation -------------------------------------------------------------------------


def generate_openai(clients: Clients, request: GenerationRequest) -> LLMResponse:
    client = clients.openai()
    started = time.perf_counter()
    with translated_errors("openai"):
        response = client.chat.completions.create(
            model=clients.settings.openai_model,
            messages=[{"role": "user", "content": request.prompt}],
            temperature=request.temperature,
            max_tokens=request.max_tokens,
        )
        if not isinstance(response, sdk("openai").types.chat.ChatCompletion):
            raise BadResponseError("openai", f"not a chat completion: {str(response)[:120]!r}")
        if not response.choices:
            raise BadResponseError("openai", "response has no choices")
        content = _require("openai", response.choices[0].message.content, "message content")
        usage = response.usage
        return LLMResponse(
            content=content,
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            model=response.model or clients.settings.openai_model,
            response_time_ms=(time.perf_counter() - started) * 1000,
        )


def generate_anthropic(clients: Clients, request: GenerationRequest) -> LLMResponse:
    client = clients.anthropic()
    started = time.perf_counter()
    with translated_errors("anthropic"):
        # The Messages API of the current SDK takes no sampling temperature: the
        # orchestrator's temperature applies to OpenAI-compatible providers only.
        response = client.messages.create(
            model=clients.settings.anthropic_model,
            messages=[{"role": "user", "content": request.prompt}],
            max_tokens=request.max_tokens,
        )
        anthropic_types = sdk("anthropic").types
        if not isinstance(response, anthropic_types.Message):
            raise BadResponseError("anthropic", f"not a message: {str(response)[:120]!r}")
        text = "".join(
            block.text for block in response.content if isinstance(block, anthropic_types.TextBlock)
        )
        if not text:
            raise BadResponseError("anthropic", "response has no text content")
        return LLMResponse(
            content=text,
            prompt_tokens=response.usage.input_tokens,
            completion_tokens=response.usage.output_tokens,
            model=response.model or clients.settings.anthropic_model,
            response_time_ms=(time.perf_counter() - started) * 1000,
        )


def generate_mock(clients: Clients, request: GenerationRequest) -> LLMResponse:
    settings = clients.settings
    return mock.generate(
        prompt=request.prompt,
        topic=request.topic,
        batch_size=request.batch_size,
        latency_ms=settings.mock_latency_ms,
        failure_rate=settings.mock_failure_rate,
        vocabulary=settings.mock_vocabulary,
    )


GENERATORS: dict[str, Callable[[Clients, GenerationRequest], LLMResponse]] = {
    "openai": generate_openai,
    "anthropic": generate_anthropic,
    "mock": generate_mock,
}


def generate(clients: Clients, provider: str, request: GenerationRequest) -> LLMResponse:
    """Call ``provider`` through its SDK (or the mock); our errors only."""
    if not clients.settings.is_configured(provider):
        raise ProviderNotConfiguredError(f"{provider}: not configured in this deployment")
    response = GENERATORS[provider](clients, request)
    return response.model_copy(update={"content": clean_text(response.content)})


# --- health checks ----------------------------------------------------------------------


def health_check_openai(clients: Clients) -> None:
    client = clients.openai()
    model = clients.settings.openai_model
    with translated_errors("openai"):
        if clients.settings.health_check == "completion":
            client.chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": HEALTH_CHECK_PROMPT}],
                max_tokens=1,
            )
        else:
            found = client.models.retrieve(model)
            if not isinstance(found, sdk("openai").types.Model):
                raise BadResponseError("openai", "model lookup did not return a model")


def health_check_anthropic(clients: Clients) -> None:
    client = clients.anthropic()
    model = clients.settings.anthropic_model
    with translated_errors("anthropic"):
        if clients.settings.health_check == "completion":
            client.messages.create(
                model=model,
                messages=[{"role": "user", "content": HEALTH_CHECK_PROMPT}],
                max_tokens=1,
            )
        else:
            found = client.models.retrieve(model)
            if not isinstance(found, sdk("anthropic").types.ModelInfo):
                raise BadResponseError("anthropic", "model lookup did not return a model")


def health_check_mock(clients: Clients) -> None:
    mock.health_check(failure_rate=clients.settings.mock_failure_rate)


HEALTH_CHECKS: dict[str, Callable[[Clients], None]] = {
    "openai": health_check_openai,
    "anthropic": health_check_anthropic,
    "mock": health_check_mock,
}


def health_check(clients: Clients, provider: str) -> None:
    """Raise a ProviderError when the provider does not answer; by default spends no tokens."""
    if not clients.settings.is_configured(provider):
        raise ProviderNotConfiguredError(f"{provider}: not configured in this deployment")
    HEALTH_CHECKS[provider](clients)
