"""Connections to a real redis-server at the concurrency of a busy worker: pools that wait
for a connection instead of failing, and a gevent consumer whose broker socket is numbered
above select()'s limit of 1024 (a worker with a thousand calls in flight that reconnects)."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import pytest
import redis
from kombu import Connection
from kombu.transport import redis as kombu_redis

from orchestrator_bridge.cli.embedded import EmbeddedRedis
from producer_tasks.settings import load_settings
from producer_tasks.state.client import POOL_SIZE, WaitingSentinelPool, connect
from producer_tasks.worker.transport import SentinelTransport, Transport
from tests.sentinel import SentinelSetup

HELD_S = 0.5  # how long the test keeps every connection busy before giving one back


def _waits_for_a_connection(pool: Any, operation: Any, size: int) -> float:
    """Every connection of ``pool`` busy, one given back after ``HELD_S``; ``operation``
    (which needs one) meanwhile. Its duration."""
    held = [pool.get_connection() for _ in range(size)]
    timer = threading.Timer(HELD_S, pool.release, args=(held[0],))
    timer.start()
    started = time.monotonic()
    try:
        operation()
    finally:
        timer.join()
        for connection in held[1:]:
            pool.release(connection)
    return time.monotonic() - started


def _ack_waits(url: str, transport: type, **options: Any) -> float:
    """A message fetched, then acknowledged while the channel's pool (2 connections) is busy:
    how long the ack took (kombu's own pool raises "Too many connections" instead)."""
    connection = Connection(url, transport=transport, transport_options={"max_connections": 2, **options})
    try:
        queue = connection.SimpleQueue("pool-test")
        queue.put({"cycle": 1})
        channel = connection.default_channel
        message = channel.basic_get("pool-test", no_ack=False)
        assert message is not None
        return _waits_for_a_connection(channel.pool, lambda: channel.basic_ack(message.delivery_tag), 2)
    finally:
        connection.release()


def test_a_busy_broker_channel_waits_for_a_connection_instead_of_failing_an_ack(redis_url: str) -> None:
    """kombu's channel pool (10 connections by default) raises "Too many connections" as
    soon as all are busy: at 256 cycles in flight dozens of acks a run failed, thousands at
    1,024. Ours waits for one."""
    with pytest.raises(redis.ConnectionError, match="Too many connections"):
        _ack_waits(redis_url, kombu_redis.Transport)
    assert _ack_waits(redis_url, Transport) >= HELD_S * 0.8  # waited for the one given back


def test_the_state_client_waits_for_a_connection_instead_of_failing(redis_url: str) -> None:
    client = connect(load_settings({"REDIS_URL": redis_url}))
    try:
        assert client.connection_pool.max_connections == POOL_SIZE
        waited = _waits_for_a_connection(
            client.connection_pool, lambda: client.set("pool-test", "1"), POOL_SIZE
        )
        assert waited >= HELD_S * 0.8 and client.get("pool-test") == "1"
    finally:
        client.close()


def test_through_sentinel_both_pools_wait_too() -> None:
    """``REDIS_SENTINELS``: the broker channel's pool and the state client's are the
    master's pools the Sentinels name; they wait for a busy connection as well."""
    setup = SentinelSetup().start()
    try:
        settings = load_settings(setup.env)
        options = {"master_name": settings.redis_sentinel_master}
        with pytest.raises(redis.ConnectionError, match="Too many connections"):
            _ack_waits(settings.broker_url, kombu_redis.SentinelTransport, **options)
        assert _ack_waits(settings.broker_url, SentinelTransport, **options) >= HELD_S * 0.8
        client = connect(settings)
        try:
            pool = client.connection_pool
            assert isinstance(pool, WaitingSentinelPool) and pool.max_connections == POOL_SIZE
            waited = _waits_for_a_connection(pool, lambda: client.set("pool-test", "2"), POOL_SIZE)
            assert waited >= HELD_S * 0.8 and client.get("pool-test") == "2"
            assert pool.get_master_address()[1] == setup.master.port
        finally:
            client.close()
    finally:
        setup.stop()


CONSUMER = textwrap.dedent(
    """
    from gevent import monkey

    monkey.patch_all()  # as `celery worker -P gevent` does first

    import json, os, resource, socket, sys

    url, ours = sys.argv[1], sys.argv[2] == "ours"
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]  # a thousand calls in flight
    probe = socket.socket()
    assert probe.fileno() >= 1024, probe.fileno()
    probe.close()

    from kombu import Connection
    from kombu.transport import redis as kombu_redis

    if ours:
        from producer_tasks.worker.transport import Transport
    else:
        Transport = kombu_redis.Transport
    connection = Connection(url, transport=Transport)
    queue = connection.SimpleQueue("gevent-fd-test")
    queue.put({"cycle": 7})
    try:
        message = queue.get(timeout=10)
    except ValueError as exc:
        print(json.dumps({"error": str(exc)}))
    else:
        message.ack()
        print(json.dumps({"payload": message.payload}))
    """
)


# Where the hard limit on open files is under 1200, no process can number a socket 1024 or
# more: the fault cannot happen there, and the test cannot stage it.
@pytest.mark.skipif(
    resource.getrlimit(resource.RLIMIT_NOFILE)[1] < 1200,
    reason="the hard limit on open files keeps every socket under 1024: the fault cannot occur",
)
def test_a_gevent_consumer_receives_on_a_socket_numbered_above_1024(redis_url: str) -> None:
    def consume(transport: str) -> dict[str, Any]:
        result = subprocess.run(
            [sys.executable, "-c", CONSUMER, redis_url, transport],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        found: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
        return found

    theirs = consume("kombu")
    assert "filedescriptor out of range" in theirs.get("error", ""), theirs  # the consumer dies
    assert consume("ours") == {"payload": {"cycle": 7}}


def test_a_unix_socket_broker_gets_our_transport() -> None:
    """`producer run`'s embedded Redis listens on a Unix socket (``REDIS_URL=unix://…``):
    celeryconfig names it for Celery as ``redis+socket://`` (kombu's scheme, which tools such
    as Flower read), and messages go through our transport (registered under that scheme)."""
    code = textwrap.dedent(
        """
        import json
        from producer_tasks.worker.app import app

        with app.connection_for_write() as connection:
            queue = connection.SimpleQueue("socket-test")
            queue.put({"cycle": 3})
            message = queue.get(timeout=10)
            message.ack()
            transport = type(connection.transport)
            print(json.dumps([app.conf.broker_url, app.conf.result_backend, transport.__module__, message.payload]))
        """
    )
    with EmbeddedRedis(unix_socket=True) as server:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PRODUCER_", "REDIS_", "CELERY_"))}
        env["REDIS_URL"] = server.url
        result = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr[-3000:]
        broker, backend, module, payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert broker == f"redis+socket://{server.socket_path}?virtual_host=0"
    assert backend == f"redis+socket://{server.socket_path}?virtual_host=0"
    assert module == "producer_tasks.worker.transport" and payload == {"cycle": 3}
