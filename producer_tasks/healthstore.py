"""Fleet-wide health, statistics and the bounded attempt history, stored in Redis.

One Lua script records an outcome atomically (``lua/outcome.lua``); its health rules are
those of ``producer_tasks.health`` and tests check that both agree.
"""

from __future__ import annotations

from typing import Any

from orchestrator_bridge.messages import ProviderStatus
from producer_tasks.fleet import Fleet, ScriptCall, now_ms
from producer_tasks.records import GenerationAttempt, LLMResponse
from producer_tasks.settings import Settings

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
) -> ScriptCall:
    """The script call that updates statistics, health and history (see ``record_outcome``)."""
    return ScriptCall(
        "outcome",
        [fleet.keys.health(provider), fleet.keys.stats(provider), fleet.keys.history],
        [
            1 if success else 0,
            now_ms(),
            response.response_time_ms if response else response_ms,
            response.prompt_tokens if response else 0,
            response.completion_tokens if response else 0,
            candidates,
            unique,
            settings.unhealthy_after,
            cooldown_until_ms,
            error[:300],
            attempt.model_dump_json() if attempt else "",
            settings.history_size,
            1 if counts_as_request else 0,
            EMA_ALPHA,
            1 if rate_limited else 0,
        ],
    )


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
    """The seed's GenerationAttempt, with long texts cut (no secrets are ever in them)."""
    return GenerationAttempt(
        timestamp_ms=now_ms(),
        provider_used=provider,
        prompt_sent=prompt[:MAX_HISTORY_TEXT],
        raw_response=response.content[:MAX_HISTORY_TEXT] if response else "",
        parsed_candidates=candidates,
        response_time_ms=response.response_time_ms if response else response_ms,
        tokens_used=response.tokens_used if response else 0,
        success=success,
        error=error[:300],
    )
