"""Errors of the producer package.

::

    ProducerError                        root of everything this package raises
    ├── ConfigurationError               invalid settings or orchestrator configuration
    ├── ProviderNotConfiguredError       a provider without credentials was asked for
    ├── NoUsableProviderError            every provider is unhealthy, cooling down or unserved
    ├── StateError                       Redis could not be read or written (a blip)
    └── ProviderError                    a provider call failed (carries ``provider``)
        ├── RateLimitedError             429; ``retry_after_s`` from Retry-After when given
        ├── ProviderTimeoutError         our timeout fired
        ├── ProviderUnavailableError     5xx, overloaded, connection refused or reset
        ├── BadResponseError             200 but empty, unparseable or not the API (HTML)
        └── NotRetryableError            401/403/404, bad request: retrying will not help
"""

from __future__ import annotations


class ProducerError(Exception):
    """Root of every error raised by ``producer_tasks``."""


class ConfigurationError(ProducerError):
    """Settings or an orchestrator configuration are invalid; the message says why."""


class ProviderNotConfiguredError(ProducerError):
    """The provider has no credentials (or is unknown) in this deployment."""


class NoUsableProviderError(ProducerError):
    """No provider can take a call now; ``reason`` explains each one."""


class StateError(ProducerError):
    """Fleet state in Redis could not be read or written."""


class ProviderError(ProducerError):
    """A provider call failed."""

    retryable = True

    def __init__(self, provider: str, message: str) -> None:
        super().__init__(f"{provider}: {message}")
        self.provider = provider


class RateLimitedError(ProviderError):
    """The provider answered 429; ``retry_after_s`` is its Retry-After, when it sent one."""

    def __init__(self, provider: str, message: str, *, retry_after_s: float | None) -> None:
        super().__init__(provider, message)
        self.retry_after_s = retry_after_s


class ProviderTimeoutError(ProviderError):
    """The call took longer than the configured timeout."""


class ProviderUnavailableError(ProviderError):
    """Server error (5xx, overloaded) or the connection failed."""


class BadResponseError(ProviderError):
    """The provider answered, but not with a usable completion."""


class NotRetryableError(ProviderError):
    """Authentication, permission, unknown model or bad request: retrying will not help."""

    retryable = False
