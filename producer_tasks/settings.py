"""Typed settings, read once from the environment.

Names are part of the public interface (README): ``REDIS_URL``, ``CELERY_BROKER_URL``,
``CELERY_RESULT_BACKEND``, ``PRODUCER_ID``, ``ORCHESTRATOR_ADDR``, ``OPENAI_*``, ``ANTHROPIC_*``;
everything else is ``PRODUCER_<FIELD>``. An unknown ``PRODUCER_*`` variable is an error (a typo must not be
silently ignored), and so is any invalid value; the error names the variable.
"""

from __future__ import annotations

import difflib
import os
import tempfile
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, Literal

from pydantic import AliasChoices, Field, PrivateAttr, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from producer_tasks.addresses import check_redis_url, parse_addr, parse_sentinels, sentinel_url
from producer_tasks.catalog import BUILTINS, ProviderSpec, builtins_from, load_catalog
from producer_tasks.errors import ConfigurationError

ENV_PREFIX = "PRODUCER_"
PROVIDERS: tuple[str, ...] = BUILTINS  # the built-in providers; a fleet's own: Settings.provider_names


def _alias(name: str) -> AliasChoices:
    return AliasChoices(name)


class Settings(BaseSettings):
    """Every setting of the producer fleet (workers, beat, bridge and the CLI)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, case_sensitive=False, populate_by_name=True, extra="forbid", frozen=True
    )

    # --- fixed names (README) -----------------------------------------------------------
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        validation_alias=_alias("REDIS_URL"),
        repr=False,  # its password: never in a repr or a log line
        description="Redis for fleet state, the batch stream and the bloom filter; "
        "default broker and result backend",
    )
    celery_broker_url: str | None = Field(
        None,
        validation_alias=_alias("CELERY_BROKER_URL"),
        repr=False,
        description="Celery broker (default: REDIS_URL)",
    )
    celery_result_backend: str | None = Field(
        None,
        validation_alias=_alias("CELERY_RESULT_BACKEND"),
        repr=False,
        description="Celery result backend (default: REDIS_URL)",
    )
    redis_sentinels: str | None = Field(
        None,
        validation_alias=_alias("REDIS_SENTINELS"),
        description="host:port,host:port of Redis Sentinels: every client asks them for the master "
        "(REDIS_URL then gives only password, user and db)",
    )
    redis_sentinel_master: str = Field(
        "mymaster",
        min_length=1,
        validation_alias=_alias("REDIS_SENTINEL_MASTER"),
        description="The master's name the Sentinels monitor",
    )
    redis_sentinel_password: SecretStr | None = Field(
        None,
        validation_alias=_alias("REDIS_SENTINEL_PASSWORD"),
        description="Password of the Sentinels themselves (the master's is in REDIS_URL)",
    )
    id: str = Field(
        "producer-1",
        min_length=1,
        max_length=200,
        description="Producer id sent to the orchestrator; namespaces the Redis keys "
        "(Celery's broker keys too)",
    )
    orchestrator_addr: str = Field(
        "127.0.0.1:7979",
        validation_alias=_alias("ORCHESTRATOR_ADDR"),
        description="host:port the bridge connects to",
    )
    openai_api_key: SecretStr | None = Field(
        None,
        validation_alias=_alias("OPENAI_API_KEY"),
        description="Enables the openai provider",
    )
    openai_base_url: str | None = Field(
        None,
        validation_alias=_alias("OPENAI_BASE_URL"),
        description="Any OpenAI-compatible server (vLLM, Ollama, llama.cpp)",
    )
    openai_model: str = Field(
        "gpt-4o-mini",
        validation_alias=_alias("OPENAI_MODEL"),
        description="OpenAI model",
    )
    anthropic_api_key: SecretStr | None = Field(
        None,
        validation_alias=_alias("ANTHROPIC_API_KEY"),
        description="Enables the anthropic provider",
    )
    anthropic_base_url: str | None = Field(
        None,
        validation_alias=_alias("ANTHROPIC_BASE_URL"),
        description="Anthropic API base URL",
    )
    anthropic_model: str = Field(
        "claude-haiku-4-5",
        validation_alias=_alias("ANTHROPIC_MODEL"),
        description="Anthropic model",
    )

    # --- PRODUCER_* -------------------------------------------------------------------
    concurrency: int = Field(8, ge=1, le=4096, description="Fleet-wide generation cycles in flight")
    max_backlog: int = Field(
        1000, ge=1, description="Batches waiting for the bridge above which generation pauses"
    )
    request_timeout_s: float = Field(60.0, gt=0, le=3600, description="Deadline of a whole provider call")
    health_check_interval_s: float = Field(
        15.0, gt=0, description="How often beat probes providers that are not Healthy"
    )
    health_check: Literal["model", "completion"] = Field(
        "model", description="`model`: free model lookup; `completion`: one-token completion"
    )
    unhealthy_after: int = Field(3, ge=1, description="Consecutive failures that make a provider Unhealthy")
    backoff_base_s: float = Field(1.0, gt=0, description="First retry delay after a failure")
    backoff_max_s: float = Field(60.0, gt=0, description="Cap of the exponential backoff")
    max_retry_after_s: float | None = Field(
        None,
        gt=0,
        le=86_400,
        description="Longest cooldown a 429's Retry-After may set (default: backoff cap)",
    )
    lane_lease_s: float = Field(
        5.0, gt=0, description="Worker heartbeat lifetime; lanes of a silent worker are restored"
    )
    queued_timeout_s: float = Field(
        15.0, gt=0, le=3600, description="A lane whose message no worker took within this is re-dispatched"
    )
    reconcile_interval_s: float = Field(1.0, gt=0, description="How often lanes are reconciled")
    openai_rpm: int | None = Field(None, ge=1, description="Fleet-wide requests per minute to openai")
    openai_tpm: int | None = Field(None, ge=1, description="Fleet-wide tokens per minute to openai")
    anthropic_rpm: int | None = Field(None, ge=1, description="Fleet-wide requests per minute to anthropic")
    anthropic_tpm: int | None = Field(None, ge=1, description="Fleet-wide tokens per minute to anthropic")
    mock_rpm: int | None = Field(None, ge=1, description="Fleet-wide requests per minute to mock")
    openai_price_input_per_mtok: float | None = Field(
        None, ge=0, description="US$ per million prompt tokens of openai (default: the model's list price)"
    )
    openai_price_output_per_mtok: float | None = Field(
        None, ge=0, description="US$ per million completion tokens of openai"
    )
    anthropic_price_input_per_mtok: float | None = Field(
        None, ge=0, description="US$ per million prompt tokens of anthropic (default: the model's list price)"
    )
    anthropic_price_output_per_mtok: float | None = Field(
        None, ge=0, description="US$ per million completion tokens of anthropic"
    )
    budget_usd: float | None = Field(
        None,
        gt=0,
        description="Fleet-wide spending cap in US$ at the providers' prices; reached, the fleet stops",
    )
    providers_file: str | None = Field(None, description="TOML file of named providers (README)")
    mock_latency_ms: float = Field(50.0, ge=0, le=600_000, description="Mock provider latency")
    mock_failure_rate: float = Field(0.0, ge=0, le=1, description="Share of mock calls that fail")
    mock_vocabulary: int = Field(
        5000, ge=10, le=10_000_000, description="Distinct attributes the mock can produce per topic"
    )
    bloom_filter: bool = Field(
        True,
        description="Drop what the shared bloom filter has seen (`false`: every repeat is sent and paid for)",
    )
    prompt_strategy: Literal[
        "adaptive", "fixed", "facets", "avoid", "avoid-long", "facets-avoid", "novelty"
    ] = Field(
        "adaptive", description="`adaptive`: per provider and topic, what pays (README: Prompt strategies)"
    )
    avoid_tokens: int = Field(60, ge=0, le=20_000, description="Tokens of the `avoid` strategies' lists")
    avoid_tokens_long: int = Field(300, ge=0, le=20_000, description="Tokens of the `avoid-long` list")
    facets: int = Field(
        20, ge=0, le=100, description="Facets the model is asked for once per topic (0: none)"
    )
    near_duplicates: bool = Field(
        True,
        description="With the bloom filter: also drop surface variants of known attributes "
        "(case, accents, punctuation, '(PDO)', articles, plurals; README: Near-duplicates)",
    )
    bloom_capacity: int = Field(1_000_000, ge=1, description="Items the producer's own filter is sized for")
    bloom_error_rate: float = Field(0.01, gt=0, lt=1, description="Target false-positive rate of that filter")
    selection: Literal["static", "adaptive", "adaptive-cost"] = Field(
        "static", description="`adaptive`: weights by recent novelty and success; `adaptive-cost` per dollar"
    )
    history_size: int = Field(100, ge=1, le=100_000, description="Generation attempts kept in Redis")
    history_sample_s: float = Field(1.0, ge=0, le=3600, description="Seconds between sampled successes")
    max_response_chars: int = Field(100_000, ge=100, description="Longest model answer that is parsed")
    max_response_bytes: int = Field(1 << 20, ge=1024, description="Largest answer read from a provider")
    max_attribute_chars: int = Field(200, ge=2, description="Longest attribute kept")
    max_prompt_chars: int = Field(
        20_000, ge=100, le=100_000, description="Longest prompt template an orchestrator may set"
    )
    max_tokens_limit: int = Field(
        16_384, ge=1, le=131_072, description="Highest `max_tokens` an orchestrator may ask for per call"
    )
    max_batch_size: int = Field(
        200, ge=1, le=1000, description="Largest batch size an orchestrator may ask for"
    )
    max_frame_bytes: int = Field(
        16 * 1024 * 1024, ge=1024, le=0xFFFF_FFFF, description="Largest frame accepted from the orchestrator"
    )
    status_interval_s: float = Field(10.0, gt=0, description="Periodic ProducerStatus interval")
    resend_window_s: float = Field(
        120.0,
        ge=0,
        le=86_400,
        description="How long batches written to the orchestrator are kept to re-send after a reconnect",
    )
    resend_window_bytes: int = Field(
        64 * 1024 * 1024, ge=0, description="Most bytes of batches the resend window keeps"
    )
    reconnect_max_s: float = Field(30.0, gt=0, description="Cap of the bridge's reconnect backoff")
    redis_tls_insecure: bool = Field(
        False,
        description="With `rediss://`: skip certificate verification (explicit opt-out; default verifies)",
    )
    orchestrator_tls: bool = Field(False, description="Use TLS to the orchestrator")
    orchestrator_tls_ca: str | None = Field(None, description="CA bundle for the orchestrator's certificate")
    worker_idle_ok: bool = Field(
        False,
        description="A worker whose `-Q` leaves it no provider it can call stays up, idle (else: exit 2)",
    )
    health_dir: str = Field(
        tempfile.gettempdir(),
        min_length=1,
        description="Folder of the liveness files `producer healthcheck` reads",
    )
    metrics_port: int | None = Field(
        None, ge=0, le=65535, description="Prometheus endpoint of the bridge (off when unset)"
    )
    metrics_host: str = Field(
        "127.0.0.1",
        min_length=1,
        description="Address the metrics endpoint binds (`0.0.0.0`: every interface)",
    )

    _catalog: dict[str, ProviderSpec] | None = PrivateAttr(None)

    @field_validator("orchestrator_addr")
    @classmethod
    def _check_addr(cls, value: str) -> str:
        parse_addr(value)
        return value

    @field_validator("redis_url", "celery_broker_url", "celery_result_backend")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        return value if value is None else check_redis_url(value)

    @field_validator("redis_sentinels")
    @classmethod
    def _check_sentinels(cls, value: str | None) -> str | None:
        if value is not None:
            parse_sentinels(value)
        return value

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        if any(c.isspace() for c in value) or "{" in value or "}" in value:
            raise ValueError("must not contain whitespace or braces")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only what ``load_settings`` passes in: it is the one place that reads the
        environment (so an explicit mapping is never mixed with ``os.environ``)."""
        return (init_settings,)

    # --- derived ----------------------------------------------------------------------
    @property
    def sentinels(self) -> list[tuple[str, int]]:
        """The Sentinels' addresses (empty: REDIS_URL names the server itself)."""
        return parse_sentinels(self.redis_sentinels) if self.redis_sentinels else []

    @property
    def sentinel_url(self) -> str:
        """The Sentinels as Celery/kombu want them (``addresses.sentinel_url``)."""
        return sentinel_url(self.redis_url, self.sentinels)

    @property
    def retry_after_cap_s(self) -> float:
        """The longest cooldown a provider's Retry-After may set."""
        return self.max_retry_after_s or self.backoff_max_s

    @property
    def broker_url(self) -> str:
        return self.celery_broker_url or (self.sentinel_url if self.sentinels else self.redis_url)

    @property
    def result_backend(self) -> str:
        return self.celery_result_backend or (self.sentinel_url if self.sentinels else self.redis_url)

    @property
    def providers(self) -> dict[str, ProviderSpec]:
        """Every named provider (``producer_tasks.catalog``), built-ins first; keys from
        ``os.environ`` for settings made without ``load_settings``."""
        return self._catalog if self._catalog is not None else self.load_providers(os.environ)

    def load_providers(self, environ: Mapping[str, str]) -> dict[str, ProviderSpec]:
        """The built-ins and the providers file's entries (keys from ``environ``), kept."""
        path = self.providers_file
        self._catalog = load_catalog(builtins_from(self), mock_rpm=self.mock_rpm, path=path, environ=environ)
        return self._catalog

    @property
    def provider_names(self) -> tuple[str, ...]:
        return tuple(self.providers)

    def spec(self, provider: str) -> ProviderSpec:
        return self.providers[provider]

    def is_configured(self, provider: str) -> bool:
        """This process can call ``provider`` (its key is set, or it needs none)."""
        return provider in self.providers and self.providers[provider].configured

    @property
    def configured_providers(self) -> tuple[str, ...]:
        return tuple(p for p, spec in self.providers.items() if spec.configured)

    def rate_limits(self, provider: str) -> tuple[int | None, int | None]:
        """(requests per minute, tokens per minute) for a provider; None = unlimited."""
        spec = self.providers.get(provider)
        return (spec.rpm, spec.tpm) if spec else (None, None)


def env_names() -> dict[str, str]:
    """Environment variable name -> field name, for every setting."""
    names: dict[str, str] = {}
    for name, info in Settings.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            names[str(alias.choices[0]).upper()] = name
        else:
            names[f"{ENV_PREFIX}{name}".upper()] = name
    return names


def _check_unknown(environ: Mapping[str, str]) -> None:
    known = env_names()
    unknown = sorted(k for k in environ if k.upper().startswith(ENV_PREFIX) and k.upper() not in known)
    if unknown:
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name.upper(), list(known), n=1)
            hints.append(f"{name} (did you mean {close[0]}?)" if close else name)
        raise ConfigurationError("unknown setting(s): " + ", ".join(hints))


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the settings; every problem becomes one ConfigurationError."""
    env = os.environ if environ is None else environ
    _check_unknown(env)
    known = env_names()
    values: dict[str, Any] = {known[k.upper()]: v for k, v in env.items() if k.upper() in known and v != ""}
    try:
        settings = Settings(**values)
    except ValidationError as exc:
        reverse = {field: env for env, field in known.items()}
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "?"
            problems.append(f"{reverse.get(field, field)}: {error['msg']}")
        raise ConfigurationError("invalid settings: " + "; ".join(problems)) from None
    if settings.sentinels and settings.redis_url.startswith("rediss://"):  # refused, not silently plain
        raise ConfigurationError(
            "invalid settings: REDIS_SENTINELS: no TLS through Sentinels (REDIS_URL: redis://)"
        )
    settings.load_providers(env)  # the providers file, read once here
    return settings


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once."""
    return load_settings()
