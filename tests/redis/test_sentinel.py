"""Every client through Redis Sentinel, and a real failover (kill -9 of the master)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from producer_tasks.errors import ConfigurationError, StateError
from producer_tasks.settings import load_settings
from producer_tasks.state.fleet import Fleet
from tests.sentinel import SentinelSetup, failed_over


@pytest.fixture
def sentinel_setup() -> Iterator[SentinelSetup]:
    setup = SentinelSetup().start()
    try:
        yield setup
    finally:
        setup.stop()


def test_the_state_client_follows_a_failover(sentinel_setup: SentinelSetup) -> None:
    settings = load_settings(sentinel_setup.env)
    assert settings.broker_url.startswith("sentinel://127.0.0.1:")  # Celery asks them too
    fleet = Fleet.from_settings(settings)
    try:
        fleet.heartbeat("w1@a", ["mock"], slots=4)
        fleet.redis.wait(1, 2000)  # replicated before the master dies
        assert fleet.redis.connection_pool.get_master_address()[1] == sentinel_setup.master.port
        sentinel_setup.kill_master()
        took = failed_over(sentinel_setup)
        deadline = time.monotonic() + 30
        while True:  # the first calls after the kill fail with a clear error, then it reconnects
            try:
                slots = fleet.serving_slots()
                break
            except StateError as exc:
                assert "redis:" in str(exc)
                assert time.monotonic() < deadline, "no reconnect to the new master"
                time.sleep(0.2)
        assert slots["mock"] == 4 or slots["mock"] == 0  # the lease may have passed meanwhile
        assert fleet.redis.hget(fleet.keys.worker_slots, "w1@a") == "4"  # replicated data survived
        assert fleet.redis.connection_pool.get_master_address()[1] == sentinel_setup.replica.port
        assert took < 20
    finally:
        fleet.close()


def test_bad_sentinel_settings_are_clear_errors() -> None:
    with pytest.raises(ConfigurationError, match=r"REDIS_SENTINELS: .*not host:port"):
        load_settings({"REDIS_SENTINELS": "localhost"})
    with pytest.raises(ConfigurationError, match="REDIS_SENTINELS"):
        load_settings({"REDIS_SENTINELS": " , "})
