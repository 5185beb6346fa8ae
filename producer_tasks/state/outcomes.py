"""Fleet-wide health, statistics and the bounded attempt history, stored in Redis.

One Lua script records an outcome atomically (``lua/outcome.lua``); its health rules are
those of ``producer_tasks.health`` and tests check that both agree.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

from producer_tasks.clock import now_ms
from producer_tasks.printable import printable
from producer_tasks.records import GenerationAttempt, LLMResponse, ProviderStatus
from producer_tasks.settings import Settings
from producer_tasks.state.fleet import Fleet
from producer_tasks.state.scripts import ONCE_TTL_MS, Outcome, ScriptCall

EMA_ALPHA = 0.1
MAX_HISTORY_TEXT = 2000


def outcome_call(
    fleet: Fleet,
    settings: Settings,
    provider: str,
    *,
    success: bool,
    response: LLMResponse | None = None,
    response_ms: float = 0.0,
    candidates: int = 0,
    unique: int = 0,
    error: str = "",
    cooldown_until_ms: int = 0,
    rate_limited: bool = False,
    attempt: GenerationAttempt | None = None,
    counts_as_request: bool = True,
    call_id: str | None = None,
) -> ScriptCall:
    """The script call that updates statistics, health and history (see ``record_outcome``);
    the same ``call_id`` counts once, however often the call is sent."""
    return Outcome(
        health_key=fleet.keys.health(provider),
        stats_key=fleet.keys.stats(provider),
        history_key=fleet.keys.history,
        spend_key=fleet.keys.spend,
        once_key=fleet.keys.once(call_id or uuid.uuid4().hex, "outcome"),
        success=success,
        now_ms=now_ms(),
        response_ms=response.response_time_ms if response else response_ms,
        prompt_tokens=response.prompt_tokens if response else 0,
        completion_tokens=response.completion_tokens if response else 0,
        candidates=candidates,
        unique=unique,
        unhealthy_after=settings.unhealthy_after,
        cooldown_until_ms=cooldown_until_ms,
        error=printable(error),
        history_json=attempt.model_dump_json() if attempt else "",
        history_size=settings.history_size,
        counts_as_request=counts_as_request,
        alpha=EMA_ALPHA,
        rate_limited=rate_limited,
        once_ttl_ms=ONCE_TTL_MS,
        cost_usd=call_cost(settings, provider, response),
        cooldown_cap_ms=round(settings.retry_after_cap_s * 1000),
    ).call()


def call_cost(settings: Settings, provider: str, response: LLMResponse | None) -> float:
    """US dollars of one answered call at the provider's prices (0 for an unknown provider)."""
    spec = settings.providers.get(provider)
    if response is None or spec is None:
        return 0.0
    return spec.cost_usd(response.prompt_tokens, response.completion_tokens)


def record_outcome(fleet: Fleet, settings: Settings, provider: str, **outcome: Any) -> ProviderStatus:
    """Update statistics, health and history atomically; return the provider's new status."""
    (status,) = fleet.run(outcome_call(fleet, settings, provider, **outcome))
    return ProviderStatus(status)


def make_attempt(
    *,
    provider: str,
    prompt: str,
    response: LLMResponse | None,
    candidates: list[str],
    success: bool,
    error: str = "",
    response_ms: float = 0.0,
) -> GenerationAttempt:
    """A GenerationAttempt record, with long texts cut (no secrets are ever in them)."""
    return GenerationAttempt(
        timestamp_ms=now_ms(),
        provider_used=provider,
        prompt_sent=prompt[:MAX_HISTORY_TEXT],
        raw_response=response.content[:MAX_HISTORY_TEXT] if response else "",
        parsed_candidates=candidates,
        response_time_ms=response.response_time_ms if response else response_ms,
        tokens_used=response.tokens_used if response else 0,
        success=success,
        error=printable(error),
    )


class HistorySampler:
    """Which successful attempts of this process enter the history: at most one per
    ``every_s`` and provider (a busy fleet would otherwise overwrite the whole bounded
    history every second, paying Redis for each entry); failures always do."""

    def __init__(self, every_s: float) -> None:
        self.every_s = every_s
        self.last: dict[str, float] = {}
        self.lock = threading.Lock()

    def due(self, provider: str) -> bool:
        if self.every_s <= 0:
            return True
        now = time.monotonic()
        with self.lock:
            if now - self.last.get(provider, -self.every_s) < self.every_s:
                return False
            self.last[provider] = now
            return True
