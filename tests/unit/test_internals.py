"""Canaries for the library internals we lean on (docs/architecture.md, "where we lean on
library internals"): each fails, naming the library and its version, when the code we copy,
bypass or reproduce has changed in the installed version. The behaviour itself is tested
against a real Redis in tests/redis (test_broker.py, test_broker_pools.py).

A failure here is not a bug in the fleet: it says an upgrade moved something we depend on.
Read the library's change to that function, adapt ours (or raise the fence in
pyproject.toml no further), then record the new fingerprint below.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable
from typing import Any

import celery
import kombu
import pytest
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils import eventio

# what we rely on in each, and the fingerprint of its source in the version we last read
KOMBU_CODE: dict[str, tuple[Callable[..., Any], str, str]] = {
    "Channel._get_pool": (
        kombu_redis.Channel._get_pool,
        "531a48f9a3689377",
        "worker/transport.py copies its body to build a waiting pool (_connparams, keyprefix_fanout)",
    ),
    "SentinelChannel._get_pool": (
        kombu_redis.SentinelChannel._get_pool,
        "0d583df0e9e99758",
        "worker/transport.py remakes the pool it returns as a waiting one",
    ),
    "QoS.append": (
        kombu_redis.QoS.append,
        "c6e9592551eb2ac8",
        "state/lua/assign.lua writes the same unacked hash and index entry for a pushed cycle message",
    ),
    "QoS.ack": (
        kombu_redis.QoS.ack,
        "a33d955576c4adc4",
        "a delivering cycle removes that entry itself; our QoS skips kombu's removal",
    ),
    "Channel._create_client": (
        kombu_redis.Channel._create_client,
        "b87af9b01c4981dd",
        "our channel keeps the client it returns, one per pool (conn_or_acquire)",
    ),
    "Channel.conn_or_acquire": (
        kombu_redis.Channel.conn_or_acquire,
        "73c0765b5280564e",
        "our channel overrides it to reuse one client",
    ),
    "Channel.close": (
        kombu_redis.Channel.close,
        "65ce068c59fb1856",
        "our channel skips its restore (do_restore) when the transport lost its client",
    ),
}


def fingerprint(function: Callable[..., Any]) -> str:
    return hashlib.sha256(inspect.cleandoc(inspect.getsource(function)).encode()).hexdigest()[:16]


@pytest.mark.parametrize("name", sorted(KOMBU_CODE))
def test_kombus_code_we_copy_or_bypass_is_the_code_we_read(name: str) -> None:
    function, expected, reliance = KOMBU_CODE[name]
    assert fingerprint(function) == expected, (
        f"kombu {kombu.__version__}: kombu.transport.redis.{name} changed ({fingerprint(function)});"
        f" {reliance}. Re-read it, adapt ours, then record the new fingerprint."
    )


def test_kombus_redis_qos_still_sits_on_the_virtual_qos_we_call_past_it() -> None:
    """Our QoS calls ``virtual.QoS.append``/``ack`` directly, skipping kombu's Redis round trips."""
    assert issubclass(kombu_redis.QoS, virtual.QoS), f"kombu {kombu.__version__}: Redis QoS is no virtual.QoS"
    for method in ("append", "ack"):
        parameters = list(inspect.signature(getattr(virtual.QoS, method)).parameters)
        assert parameters[:2] == ["self", "message" if method == "append" else "delivery_tag"], (
            f"kombu {kombu.__version__}: virtual.QoS.{method}{inspect.signature(getattr(virtual.QoS, method))}"
        )


def test_kombus_poller_factory_is_still_there_for_gevent() -> None:
    """Under gevent, worker/transport.py points ``eventio._get_poller`` at ``eventio._poll``."""
    assert callable(getattr(eventio, "_get_poller", None)), f"kombu {kombu.__version__}: no eventio._get_poller"
    poller = getattr(eventio, "_poll", None)
    assert isinstance(poller, type), f"kombu {kombu.__version__}: no eventio._poll"
    for method in ("register", "unregister", "poll"):
        assert callable(getattr(poller, method, None)), f"kombu {kombu.__version__}: eventio._poll.{method}"


def test_celerys_message_protocol_is_the_one_our_script_writes() -> None:
    """worker/messages.py writes Celery's protocol-2 message (tests/redis/test_broker.py
    compares it with what send_task writes); the protocol must still be the default."""
    from producer_tasks.worker.app import app

    assert app.conf.task_protocol == 2, f"celery {celery.__version__}: task_protocol {app.conf.task_protocol}"


def test_redis_pys_connection_still_makes_its_socket_in_connect_and_polls_in_can_read() -> None:
    """state/client.py extends ``Connection._connect`` (the socket it returns gets kernel
    timeouts) and answers ``can_read(0)`` itself for the state client's pool."""
    import redis

    for cls in (redis.Connection, redis.UnixDomainSocketConnection):
        connect = getattr(cls, "_connect", None)
        assert callable(connect) and list(inspect.signature(connect).parameters) == ["self"], (
            f"redis-py {redis.__version__}: {cls.__name__}._connect changed"
        )
    parameters = inspect.signature(redis.Connection.can_read).parameters
    assert list(parameters) == ["self", "timeout"] and parameters["timeout"].default == 0, (
        f"redis-py {redis.__version__}: Connection.can_read{inspect.signature(redis.Connection.can_read)}"
    )
