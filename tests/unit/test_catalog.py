"""Named providers: the built-ins from the environment, a providers file, and its errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from producer_tasks.catalog import DEFAULT_PRICES
from producer_tasks.errors import ConfigurationError
from producer_tasks.settings import load_settings
from tests.conftest import write_providers_file


def test_without_a_file_the_environment_defines_the_three_built_ins() -> None:
    settings = load_settings({"OPENAI_API_KEY": "sk-x", "PRODUCER_OPENAI_RPM": "60"})
    assert settings.provider_names == ("openai", "anthropic", "mock")
    assert settings.configured_providers == ("openai", "mock")  # no ANTHROPIC_API_KEY
    openai = settings.spec("openai")
    assert (openai.kind, openai.model, openai.rpm) == ("openai", "gpt-4o-mini", 60)
    assert (openai.price_input_per_mtok, openai.price_output_per_mtok) == DEFAULT_PRICES["gpt-4o-mini"]
    assert settings.rate_limits("openai") == (60, None)


def test_a_file_adds_named_providers_and_replaces_a_built_in(tmp_path: Path) -> None:
    env = write_providers_file(
        tmp_path / "providers.toml",
        {
            "llama-a": {"kind": "openai-compatible", "base_url": "http://gpu-a:8000/v1", "model": "llama"},
            "qwen-b": {
                "kind": "openai",
                "base_url": "http://gpu-b:8000/v1",
                "model": "qwen",
                "api_key_env": "QWEN_KEY",
                "rpm": 600,
                "tpm": 200000,
                "price_input_per_mtok": 0.1,
                "price_output_per_mtok": 0.2,
                "timeout_s": 30,
            },
            "openai": {"kind": "openai", "model": "gpt-4.1-nano", "api_key_env": "TEAM_OPENAI_KEY"},
            "claude": {"kind": "anthropic", "model": "claude-sonnet-4-5", "api_key_env": "CLAUDE_KEY"},
        },
    )
    settings = load_settings({**env, "QWEN_KEY": "sk-qwen", "TEAM_OPENAI_KEY": "sk-team"})
    assert settings.provider_names == ("openai", "anthropic", "mock", "llama-a", "qwen-b", "claude")
    # configured: a key present, or none needed (llama-a); claude's variable is unset here
    assert settings.configured_providers == ("openai", "mock", "llama-a", "qwen-b")
    qwen = settings.spec("qwen-b")
    assert qwen.api_key is not None and qwen.api_key.get_secret_value() == "sk-qwen"
    assert (qwen.rpm, qwen.tpm, qwen.timeout_s) == (600, 200000, 30)
    assert qwen.cost_usd(1_000_000, 500_000) == pytest.approx(0.1 + 0.1)
    assert settings.spec("openai").model == "gpt-4.1-nano"  # the file's entry replaced the built-in
    assert settings.spec("claude").price_output_per_mtok == DEFAULT_PRICES["claude-sonnet-4-5"][1]
    assert settings.spec("llama-a").cost_usd(1000, 1000) == 0.0  # a model without a list price
    assert "sk-qwen" not in repr(qwen) and "sk-qwen" not in qwen.model_dump_json()


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ({"kind": "gemini", "model": "m", "api_key_env": "K"}, "kind: unknown kind 'gemini'"),
        ({"kind": "openai", "base_url": "http://x/v1"}, "model: missing"),
        ({"kind": "anthropic", "model": "claude-haiku-4-5"}, "api_key_env: missing"),
        ({"kind": "openai", "model": "gpt-4o"}, "api_key_env: missing"),
        ({"kind": "openai", "model": "m", "base_url": "http://x/v1", "modle": "typo"}, "modle: Extra inputs"),
        ({"kind": "openai", "model": "m", "base_url": "http://x/v1", "rpm": 0}, "rpm: Input should be"),
        ({"kind": "openai", "model": "m", "api_key_env": "has space"}, "api_key_env: String should match"),
        ({"kind": "mock", "api_key_env": "K"}, "a mock provider takes no base_url or api_key_env"),
    ],
)
def test_a_bad_entry_names_the_file_the_provider_and_the_field(
    tmp_path: Path, entry: dict[str, object], says: str
) -> None:
    env = write_providers_file(tmp_path / "p.toml", {"llama-a": entry})
    with pytest.raises(ConfigurationError) as caught:
        load_settings(env)
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'p.toml'}: provider 'llama-a': ") and says in message, message


@pytest.mark.parametrize("name", ["Llama", "llama_a", "-llama", "llama-", "a" * 64, "llama.a"])
def test_a_name_that_is_not_a_queue_name_is_refused(tmp_path: Path, name: str) -> None:
    path = tmp_path / "p.toml"
    path.write_text(f'[providers."{name}"]\nkind = "mock"\n')
    with pytest.raises(ConfigurationError, match="lower-case letters, digits and '-'"):
        load_settings({"PRODUCER_PROVIDERS_FILE": str(path)})


def test_an_unreadable_or_malformed_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"PRODUCER_PROVIDERS_FILE: cannot read .*nothing\.toml"):
        load_settings({"PRODUCER_PROVIDERS_FILE": str(tmp_path / "nothing.toml")})
    bad = tmp_path / "bad.toml"
    bad.write_text("[providers.a\nkind=")
    with pytest.raises(ConfigurationError, match=r"bad\.toml: not valid TOML"):
        load_settings({"PRODUCER_PROVIDERS_FILE": str(bad)})
    bad.write_text('[provider.a]\nkind = "mock"\n')
    with pytest.raises(ConfigurationError, match=r"unknown table\(s\) provider"):
        load_settings({"PRODUCER_PROVIDERS_FILE": str(bad)})
    bad.write_text("")
    with pytest.raises(ConfigurationError, match=r"no \[providers\.<name>\] table"):
        load_settings({"PRODUCER_PROVIDERS_FILE": str(bad)})
