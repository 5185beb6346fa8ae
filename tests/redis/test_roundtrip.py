"""One round trip without redis-py's pipeline (state/roundtrip.py): the fleet's and the
bloom filter's; and the state client's connections with kernel timeouts (state/client.py),
against a real redis-server."""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest
import redis
from redis.exceptions import NoScriptError, ResponseError

from producer_tasks.errors import StateError
from producer_tasks.settings import load_settings
from producer_tasks.state import client as state_client
from producer_tasks.state import roundtrip
from producer_tasks.state.fleet import new_token

COMMANDS: list[roundtrip.Command] = [
    ("HSET", "h", "a", 1, "b", 2.5),
    ("HGETALL", "h"),
    ("SET", "k", "v", "NX"),
    ("SET", "k", "w", "NX"),
    ("HMGET", "h", "a", "missing"),
    ("INCRBY", "h", 1),  # a hash is not a counter: an error reply, the others still run
    ("EVALSHA", "0" * 40, 0),
    ("ZADD", "z", 1, "m"),
    ("ZCOUNT", "z", "-inf", "+inf"),
]


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    connected = state_client.connect(load_settings({"REDIS_URL": redis_url}))
    yield connected
    connected.close()


def test_replies_are_redis_pys_pipeline_replies(client: redis.Redis, redis_url: str) -> None:
    ours = roundtrip.execute(client, COMMANDS)
    client.flushall()
    pipe = client.pipeline(transaction=False)
    for command in COMMANDS:
        pipe.execute_command(*command)
    theirs = pipe.execute(raise_on_error=False)
    assert [type(r) for r in ours] == [type(r) for r in theirs]
    assert [r for r in ours if not isinstance(r, Exception)] == [
        r for r in theirs if not isinstance(r, Exception)
    ]
    assert ours[1] == {"a": "1", "b": "2.5"} and ours[2] is True and ours[3] is None
    assert isinstance(ours[5], ResponseError) and isinstance(ours[6], NoScriptError)
    assert roundtrip.execute(client, [("PING",)]) == [True]  # the connection is still in step


def test_a_connection_the_server_dropped_is_replaced_and_the_trip_runs_once(
    client: redis.Redis, redis_url: str
) -> None:
    assert roundtrip.execute(client, [("CLIENT", "SETNAME", "ours")]) == ["OK"]
    killer = redis.Redis.from_url(redis_url)
    assert killer.client_kill_filter(_type="normal", skipme=True) >= 1
    killer.close()
    assert roundtrip.execute(client, [("INCR", "n"), ("GET", "n")]) == [1, "1"]


def test_the_state_clients_sockets_block_with_the_kernels_timeouts(client: redis.Redis) -> None:
    client.ping()
    connection = client.connection_pool.get_connection()
    try:
        sock = connection._sock
        assert sock.gettimeout() is None  # blocking: no poll before each send and receive
        timeval = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.calcsize("ll"))
        assert struct.unpack("ll", timeval) == (state_client.SOCKET_TIMEOUT_S, 0)
    finally:
        client.connection_pool.release(connection)


def test_a_server_that_never_answers_fails_the_call_after_the_socket_timeout() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True).start()
    port = listener.getsockname()[1]
    pool = state_client.with_kernel_timeouts(
        redis.ConnectionPool.from_url(f"redis://127.0.0.1:{port}/0", socket_timeout=0.3, protocol=2)
    )
    silent = redis.Redis(connection_pool=pool)
    started = time.monotonic()
    try:
        with pytest.raises(redis.ConnectionError, match="reading from socket"):
            roundtrip.execute(silent, [("PING",)])
        assert 0.3 <= time.monotonic() - started < 5  # the kernel's timeout, once per try
    finally:
        silent.close()
        listener.close()
        for sock in accepted:
            sock.close()


def test_the_state_clients_pool_refuses_resp3_where_its_checkout_poll_has_work() -> None:
    """The pool's readiness poll also reads RESP3 push notifications: the state client skips
    it only where none can come."""
    with pytest.raises(StateError, match="RESP2"):
        state_client.state_connections(redis.ConnectionPool(protocol=3))
    assert state_client.state_connections(redis.ConnectionPool(protocol=2)).connection_kwargs["protocol"] == 2


def test_tls_connections_keep_pythons_timeouts() -> None:
    pool = state_client.with_kernel_timeouts(redis.ConnectionPool(connection_class=redis.SSLConnection))
    assert pool.connection_class is redis.SSLConnection


def test_tokens_are_unique_version_4_uuids_and_a_forked_child_draws_its_own() -> None:
    tokens = {new_token() for _ in range(10_000)}
    assert len(tokens) == 10_000
    assert all(len(t) == 32 and t[12] == "4" for t in tokens)
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child
        os.write(write, new_token().encode())
        os._exit(0)
    os.waitpid(child, 0)
    theirs = os.read(read, 64).decode()
    os.close(read)
    os.close(write)
    assert theirs != new_token() and theirs not in tokens
