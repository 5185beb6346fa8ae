"""Settings: fixed names, validation with clear errors, secrets never printed."""

from __future__ import annotations

import pytest

from producer_tasks.addresses import parse_addr
from producer_tasks.errors import ConfigurationError
from producer_tasks.settings import env_names, load_settings
from producer_tasks.state.client import broker_is_fleet


def test_defaults_and_fixed_names() -> None:
    settings = load_settings({})
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.broker_url == settings.result_backend == settings.redis_url
    assert settings.openai_model == "gpt-4o-mini"
    assert settings.configured_providers == ("mock",)
    names = env_names()
    for name in (
        "REDIS_URL",
        "CELERY_BROKER_URL",
        "CELERY_RESULT_BACKEND",
        "PRODUCER_ID",
        "ORCHESTRATOR_ADDR",
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "OPENAI_MODEL",
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_BASE_URL",
        "ANTHROPIC_MODEL",
        "PRODUCER_CONCURRENCY",
        "PRODUCER_MAX_BACKLOG",
        "PRODUCER_BLOOM_FILTER",
    ):
        assert name in names
    others = [n for n in names if not n.startswith(("PRODUCER_", "OPENAI_", "ANTHROPIC_"))]
    assert sorted(others) == sorted(
        [
            "REDIS_URL",
            "CELERY_BROKER_URL",
            "CELERY_RESULT_BACKEND",
            "ORCHESTRATOR_ADDR",
            # Redis Sentinel (issue 13 names these)
            "REDIS_SENTINELS",
            "REDIS_SENTINEL_MASTER",
            "REDIS_SENTINEL_PASSWORD",
        ]
    )


def test_values_are_read_and_typed() -> None:
    settings = load_settings(
        {
            "PRODUCER_CONCURRENCY": "32",
            "PRODUCER_BLOOM_FILTER": "true",
            "OPENAI_API_KEY": "sk-x",
            "CELERY_BROKER_URL": "redis://broker/1",
            "PRODUCER_ID": "p-7",
            "PRODUCER_OPENAI_RPM": "600",
        }
    )
    assert settings.concurrency == 32
    assert settings.bloom_filter is True
    assert settings.id == "p-7"
    assert settings.broker_url == "redis://broker/1"
    assert settings.result_backend == settings.redis_url
    assert settings.configured_providers == ("openai", "mock")
    assert settings.rate_limits("openai") == (600, None)


@pytest.mark.adversarial
def test_secrets_never_appear_in_repr_or_errors() -> None:
    settings = load_settings({"OPENAI_API_KEY": "sk-very-secret", "ANTHROPIC_API_KEY": "ak-secret"})
    assert "sk-very-secret" not in repr(settings)
    assert "sk-very-secret" not in str(settings.model_dump())
    with pytest.raises(ConfigurationError) as info:
        load_settings({"OPENAI_API_KEY": "sk-very-secret", "PRODUCER_CONCURRENCY": "0"})
    assert "sk-very-secret" not in str(info.value)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"PRODUCER_CONCURENCY": "4"}, "PRODUCER_CONCURENCY (did you mean PRODUCER_CONCURRENCY?)"),
        ({"PRODUCER_CONCURRENCY": "many"}, "PRODUCER_CONCURRENCY: Input should be a valid integer"),
        ({"PRODUCER_CONCURRENCY": "0"}, "PRODUCER_CONCURRENCY: Input should be greater than or equal to 1"),
        ({"ORCHESTRATOR_ADDR": "localhost"}, "ORCHESTRATOR_ADDR: Value error, 'localhost' is not host:port"),
        (
            {"PRODUCER_SELECTION": "smart"},
            "PRODUCER_SELECTION: Input should be 'static', 'adaptive' or 'adaptive-cost'",
        ),
        ({"PRODUCER_MOCK_FAILURE_RATE": "1.5"}, "PRODUCER_MOCK_FAILURE_RATE"),
        ({"PRODUCER_ID": "has space"}, "PRODUCER_ID: Value error, must not contain whitespace"),
        ({"PRODUCER_BLOOM_ERROR_RATE": "0"}, "PRODUCER_BLOOM_ERROR_RATE"),
    ],
)
def test_invalid_settings_name_the_variable(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        load_settings(environ)
    assert message in str(info.value)


def test_empty_values_mean_unset() -> None:
    assert load_settings({"OPENAI_API_KEY": ""}).openai_api_key is None


def test_parse_addr() -> None:
    assert parse_addr("127.0.0.1:7979") == ("127.0.0.1", 7979)
    assert parse_addr("[::1]:80") == ("::1", 80)
    for bad in ("", "host", "host:0", "host:99999", ":80", "host:x"):
        with pytest.raises(ValueError, match="is not host:port"):
            parse_addr(bad)


@pytest.mark.parametrize(
    ("extra", "wanted"),
    [({}, "CERT_REQUIRED"), ({"PRODUCER_REDIS_TLS_INSECURE": "true"}, "CERT_NONE")],
)
def test_rediss_verifies_certificates_unless_told_not_to(extra: dict[str, str], wanted: str) -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PRODUCER_", "REDIS_", "CELERY_"))}
    env.update({"REDIS_URL": "rediss://cache.example:6380/0", **extra})
    code = (
        "import celeryconfig as c; "
        "print(c.broker_use_ssl['ssl_cert_reqs'].name, c.redis_backend_use_ssl['ssl_cert_reqs'].name, "
        "c.broker_transport_options['socket_timeout'], c.broker_transport_options['socket_keepalive'])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split()
    assert out == [wanted, wanted, "10", "True"]


@pytest.mark.parametrize(
    ("redis_url", "broker_url", "same"),
    [
        ("redis://10.0.0.5:6379/0", None, True),
        ("redis://10.0.0.5:6379/0", "redis://10.0.0.5/0", True),
        ("redis://cache.internal:6379/0", "rediss://CACHE.internal:6379", True),
        ("unix:///run/redis.sock?db=0", "redis+socket:///run/redis.sock", True),
        ("redis://10.0.0.5:6379/0", "redis://10.0.0.5:6379/1", False),
        ("redis://10.0.0.5:6379/0", "redis://10.0.0.6:6379/0", False),
        ("redis://10.0.0.5:6379/0", "redis://10.0.0.5:6380/0", False),
        ("unix:///run/redis.sock?db=0", "redis://127.0.0.1:6379/0", False),
    ],
)
def test_whether_the_broker_is_the_fleets_redis(redis_url: str, broker_url: str | None, same: bool) -> None:
    """Only then may the assign script push a cycle's message itself (worker/messages.py)."""
    env = {"REDIS_URL": redis_url, **({"CELERY_BROKER_URL": broker_url} if broker_url else {})}
    assert broker_is_fleet(load_settings(env)) is same


@pytest.mark.adversarial
def test_redis_passwords_stay_out_of_repr_and_errors() -> None:
    settings = load_settings({"REDIS_URL": "redis://:hunter2@redis.internal:6379/0"})
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings)
    with pytest.raises(ConfigurationError) as error:
        load_settings({"REDIS_URL": "http://user:hunter2@redis.internal/0"})
    assert "hunter2" not in str(error.value) and "***@redis.internal" in str(error.value)


def test_tls_through_sentinels_is_refused_at_start() -> None:
    with pytest.raises(ConfigurationError, match="REDIS_SENTINELS: no TLS through Sentinels"):
        load_settings({"REDIS_URL": "rediss://:pw@master/0", "REDIS_SENTINELS": "s1:26379"})
    assert load_settings({"REDIS_URL": "redis://:pw@master/0", "REDIS_SENTINELS": "s1:26379"}).sentinels
