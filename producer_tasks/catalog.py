"""The fleet's named providers: one ``ProviderSpec`` per name, read once with the settings.

Without a providers file the fleet has the three built-ins, defined by the environment as
before: ``openai`` (``OPENAI_*``), ``anthropic`` (``ANTHROPIC_*``) and ``mock``. A TOML file
named by ``PRODUCER_PROVIDERS_FILE`` adds any number of providers (a table each under
``[providers.<name>]``); an entry with a built-in's name replaces it. Each name is its own
Celery queue, so names are lower-case ``[a-z0-9-]``. Keys are never written in the file: an
entry names the environment variable that holds its key (``api_key_env``); a provider whose
variable is unset in this process is not configured here (a worker does not serve its queue).
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from producer_tasks.errors import ConfigurationError

Kind = Literal["openai", "anthropic", "mock"]
KIND_ALIASES = {"openai-compatible": "openai"}
NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
BUILTINS: tuple[str, ...] = ("openai", "anthropic", "mock")

# US dollars per million tokens (input, output), as the vendors list them for their current
# models; a provider's `price_*_per_mtok` overrides them, and an unknown model costs 0.
DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-5": (1.25, 10.00),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5-nano": (0.05, 0.40),
    "claude-haiku-4-5": (1.00, 5.00),
    "claude-sonnet-4-5": (3.00, 15.00),
    "claude-opus-4-1": (15.00, 75.00),
    "claude-3-5-haiku-latest": (0.80, 4.00),
}


class ProviderSpec(BaseModel):
    """One named provider, as every process of the fleet sees it."""

    model_config = ConfigDict(frozen=True)

    name: str
    kind: Kind
    model: str
    base_url: str | None = None
    api_key: SecretStr | None = None
    api_key_env: str | None = None  # where the key comes from; None = none needed
    rpm: int | None = None  # fleet-wide requests per minute (None = unlimited)
    tpm: int | None = None  # fleet-wide tokens per minute
    price_input_per_mtok: float = 0.0
    price_output_per_mtok: float = 0.0
    timeout_s: float | None = None  # None = PRODUCER_REQUEST_TIMEOUT_S

    @property
    def configured(self) -> bool:
        """This process can call it: its key is set, or it needs none."""
        return self.api_key is not None or self.api_key_env is None

    def cost_usd(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (
            prompt_tokens * self.price_input_per_mtok + completion_tokens * self.price_output_per_mtok
        ) / 1_000_000


class _Entry(BaseModel):
    """One table of the providers file (what a user may write)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str
    model: str | None = Field(None, min_length=1)
    base_url: str | None = Field(None, min_length=1)
    api_key_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    rpm: int | None = Field(None, ge=1)
    tpm: int | None = Field(None, ge=1)
    price_input_per_mtok: float | None = Field(None, ge=0)
    price_output_per_mtok: float | None = Field(None, ge=0)
    timeout_s: float | None = Field(None, gt=0, le=3600)


def _prices(model: str, entry_in: float | None, entry_out: float | None) -> tuple[float, float]:
    default_in, default_out = DEFAULT_PRICES.get(model, (0.0, 0.0))
    return (
        default_in if entry_in is None else entry_in,
        default_out if entry_out is None else entry_out,
    )


@dataclass(frozen=True, slots=True)
class Builtin:
    """What the settings say of a built-in provider (``openai``, ``anthropic``): the catalog
    takes these values; it never reads the settings or the environment itself."""

    name: Literal["openai", "anthropic"]
    model: str
    api_key: SecretStr | None
    base_url: str | None
    rpm: int | None
    tpm: int | None
    price_input_per_mtok: float | None
    price_output_per_mtok: float | None


def builtins_from(values: object) -> list[Builtin]:
    """The built-ins as ``values`` (the settings) describe them: ``openai_model`` and so on."""
    fields = [field.name for field in dataclasses.fields(Builtin) if field.name != "name"]
    names: tuple[Literal["openai", "anthropic"], ...] = ("openai", "anthropic")
    return [Builtin(name, *(getattr(values, f"{name}_{field}") for field in fields)) for name in names]


def builtin_specs(builtins: Sequence[Builtin], *, mock_rpm: int | None) -> dict[str, ProviderSpec]:
    """``openai``, ``anthropic`` and ``mock`` from the settings' values."""
    specs: dict[str, ProviderSpec] = {}
    for builtin in builtins:
        prices = _prices(builtin.model, builtin.price_input_per_mtok, builtin.price_output_per_mtok)
        specs[builtin.name] = ProviderSpec(
            name=builtin.name,
            kind=builtin.name,
            model=builtin.model,
            base_url=builtin.base_url,
            api_key=builtin.api_key,
            api_key_env=f"{builtin.name.upper()}_API_KEY",
            rpm=builtin.rpm,
            tpm=builtin.tpm,
            price_input_per_mtok=prices[0],
            price_output_per_mtok=prices[1],
        )
    specs["mock"] = ProviderSpec(name="mock", kind="mock", model="mock", rpm=mock_rpm)
    return specs


def _entry_spec(path: str, name: str, raw: Any, environ: Mapping[str, str]) -> ProviderSpec:
    where = f"{path}: provider {name!r}"
    if not NAME.match(name):
        raise ConfigurationError(
            f"{where}: the name must be lower-case letters, digits and '-' (it is a Celery queue name)"
        )
    if not isinstance(raw, dict):
        raise ConfigurationError(f"{where}: expected a table [providers.{name}]")
    try:
        entry = _Entry.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '?'}: {e['msg']}" for e in exc.errors())
        raise ConfigurationError(f"{where}: {problems}") from None
    kind = KIND_ALIASES.get(entry.kind, entry.kind)
    if kind not in ("openai", "anthropic", "mock"):
        raise ConfigurationError(
            f"{where}: kind: unknown kind {entry.kind!r} (openai, openai-compatible, anthropic or mock)"
        )
    if kind != "mock" and entry.model is None:
        raise ConfigurationError(f"{where}: model: missing (the model this provider calls)")
    if kind == "anthropic" and entry.api_key_env is None:
        raise ConfigurationError(f"{where}: api_key_env: missing (Anthropic's API needs a key)")
    if kind == "openai" and entry.base_url is None and entry.api_key_env is None:
        raise ConfigurationError(
            f"{where}: api_key_env: missing (OpenAI's own API needs a key; a local "
            "OpenAI-compatible server gives base_url and may leave it out)"
        )
    if kind == "mock" and (entry.base_url or entry.api_key_env):
        raise ConfigurationError(f"{where}: a mock provider takes no base_url or api_key_env")
    model = entry.model or "mock"
    price_in, price_out = _prices(model, entry.price_input_per_mtok, entry.price_output_per_mtok)
    key = environ.get(entry.api_key_env) if entry.api_key_env else None
    return ProviderSpec(
        name=name,
        kind=kind,  # type: ignore[arg-type]  # checked above
        model=model,
        base_url=entry.base_url,
        api_key=SecretStr(key) if key else None,
        api_key_env=entry.api_key_env,
        rpm=entry.rpm,
        tpm=entry.tpm,
        price_input_per_mtok=price_in,
        price_output_per_mtok=price_out,
        timeout_s=entry.timeout_s,
    )


def load_catalog(
    builtins: Sequence[Builtin], *, mock_rpm: int | None, path: str | None, environ: Mapping[str, str]
) -> dict[str, ProviderSpec]:
    """Every named provider: the built-ins, then the entries of the providers file at
    ``path`` (replacing a built-in of the same name; their keys from ``environ``); errors
    name the file, the provider and the field."""
    specs = builtin_specs(builtins, mock_rpm=mock_rpm)
    if not path:
        return specs
    try:
        document = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError(f"PRODUCER_PROVIDERS_FILE: cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path}: not valid TOML: {exc}") from None
    unknown = sorted(set(document) - {"providers"})
    if unknown:
        raise ConfigurationError(f"{path}: unknown table(s) {', '.join(unknown)} (only [providers.<name>])")
    providers = document.get("providers", {})
    if not isinstance(providers, dict) or not providers:
        raise ConfigurationError(f"{path}: no [providers.<name>] table")
    for name, raw in providers.items():
        specs[name] = _entry_spec(path, name, raw, environ)
    return specs
