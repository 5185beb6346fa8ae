"""kombu's Redis transports, with repairs (a worker survives its broker going away), one
Redis client per channel instead of one per operation, and cycle messages whose unacked
bookkeeping rides on the cycle's own round trips (``QoS``).

When the broker connection is lost with messages delivered but not acknowledged (every
running cycle: late acks), Celery collects the connection, which detaches the transport
from its client, and then closes it; closing the consumer's channel tries to restore the
unacknowledged messages through that detached client and raises ``AttributeError``
(``'NoneType' object has no attribute 'hostname'``), which Celery treats as unrecoverable:
the worker exits instead of reconnecting. Seen with a Redis restart mid-run.

Here a channel whose transport lost its client skips that restore. Nothing is lost: the
messages stay in the broker's unacked set (restored after the visibility timeout, where
they are no-ops) and the lanes they carried are restored by the fleet's own reconcile.

Second: a cycle that finishes after the reconnect acknowledges its message on the old,
closed channel; kombu then tries to build a new connection pool from the channel's
connection, which is gone (``'NoneType' object has no attribute 'client'``): again
"Unrecoverable error". Seen with a Sentinel failover. Here such an acknowledgement raises a
connection error, which Celery logs ("Couldn't ack") and survives; the message stays
unacked and is restored as above.

Third: kombu's channel pool fails an operation ("Too many connections") the moment its
connections are all busy; with hundreds of cycles acknowledging at once, dozens of acks a
run failed at 256 cycles in flight, thousands at 1,024. Here the pool waits for a
connection (``state.client.waiting_pool``; ``waiting_sentinel_pool`` through Sentinel).

Fourth: under gevent, kombu watches the broker's sockets with ``select()``, which cannot
watch a descriptor numbered 1024 or more. A worker with a thousand calls in flight that
reconnects to its broker gets such a socket, and the consumer dies ("filedescriptor out of
range in select()": "Unrecoverable error"; seen at 1,024 in flight, where the exhausted pool
above made the consumer reconnect). Here kombu polls with gevent's ``poll()``, which
watches any descriptor and, like its ``select()``, blocks only the calling greenlet.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils import eventio
from kombu.utils.compat import detect_environment

from producer_tasks.state.client import waiting_pool, waiting_sentinel_pool
from producer_tasks.worker.messages import REGISTERED


class SettledTags:
    """Delivery tags whose unacked entry a cycle already removed in its own round trip
    (``CeleryDispatcher.acknowledgement``): the broker's acknowledgement of them is only
    kombu's bookkeeping in memory. A prefork pool's children keep none (``kept``): their
    parent sends the acknowledgements, which then remove the entry again (harmless).
    Bounded all the same: the oldest are forgotten, with the same effect."""

    def __init__(self, limit: int = 65_536) -> None:
        self.limit = limit
        self.kept = True  # False in a prefork pool's child: its parent acknowledges
        self._tags: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, tag: str) -> None:
        if not self.kept:
            return
        with self._lock:
            self._tags[tag] = None
            if len(self._tags) > self.limit:
                self._tags.popitem(last=False)

    def take(self, tag: str) -> bool:
        with self._lock:
            if tag not in self._tags:
                return False
            del self._tags[tag]
            return True


SETTLED = SettledTags()


class QoS(kombu_redis.QoS):
    """kombu writes every delivered message to its unacked hash and index in a round trip
    of the consumer's thread, and removes it on acknowledgement in another. A cycle message
    the assign script pushed is registered there by the same script (its property
    ``unacked_registered``), and a cycle that delivered its batch removes its own entry in
    that round trip (``SETTLED``): both round trips are skipped, the rest is kombu's.

    The entry's time is the push's, not the delivery's: a message that waited in its queue
    longer than the visibility timeout is restored as a copy; by then its lane was given a
    new token (``PRODUCER_QUEUED_TIMEOUT_S``), so both copies are stale no-ops."""

    def append(self, message: Any, delivery_tag: str) -> None:
        if message.properties.get(REGISTERED):
            virtual.QoS.append(self, message, delivery_tag)  # type: ignore[no-untyped-call]
        else:
            super().append(message, delivery_tag)  # type: ignore[no-untyped-call]

    def ack(self, delivery_tag: str) -> None:
        if SETTLED.take(delivery_tag):
            virtual.QoS.ack(self, delivery_tag)  # type: ignore[no-untyped-call]
        else:
            super().ack(delivery_tag)  # type: ignore[no-untyped-call]


class Channel(kombu_redis.Channel):
    QoS = QoS
    _shared: Any = None  # the client of conn_or_acquire, on the channel's current pool

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        if client is None and self.connection is None:  # closed: its connection was replaced
            # a builtin ConnectionError (an OSError): among kombu's connection errors for Redis
            raise ConnectionError("broker channel closed after a lost connection")
        if client is None:
            client = self._shared_client()
        yield client

    def _shared_client(self) -> Any:
        """kombu builds a new Redis client for every publish, receive and ack (a tenth of a
        busy worker's CPU went to ``Redis.__init__``); one per pool serves every thread (a
        client takes a connection from its pool per command)."""
        shared, pool = self._shared, self.pool
        if shared is None or shared.connection_pool is not pool:
            shared = self._shared = self._create_client()  # type: ignore[no-untyped-call]
        return shared

    def _get_pool(self, asynchronous: bool = False) -> Any:
        params = self._connparams(asynchronous=asynchronous)  # type: ignore[no-untyped-call]
        self.keyprefix_fanout = self.keyprefix_fanout.format(db=params["db"])
        return waiting_pool(params)

    def close(self) -> None:
        transport: Any = self.connection
        if transport is not None and getattr(transport, "client", None) is None:
            self.do_restore = False  # detached by a collect after a lost connection
        super().close()  # type: ignore[no-untyped-call]


class _PollsAnyDescriptor:
    """Mixed into both transports: under gevent (monkey-patched, as ``celery worker -P
    gevent`` does before anything is imported), kombu's pollers use gevent's ``poll()``
    instead of ``select()``; set before kombu makes the transport's poller."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        gevent_poll = getattr(eventio.xpoll, "__module__", "").startswith("gevent")
        if detect_environment() == "gevent" and gevent_poll:  # type: ignore[no-untyped-call]
            eventio._get_poller = lambda: eventio._poll
        super().__init__(*args, **kwargs)


class Transport(_PollsAnyDescriptor, kombu_redis.Transport):
    Channel = Channel


class SentinelChannel(Channel, kombu_redis.SentinelChannel):
    """The same repairs on kombu's Sentinel channel (``REDIS_SENTINELS``), whose pool is
    the Sentinel's own (it follows the master), made to wait like the other."""

    def _get_pool(self, asynchronous: bool = False) -> Any:
        sentinels_pool = kombu_redis.SentinelChannel._get_pool(self, asynchronous)  # type: ignore[no-untyped-call]
        return waiting_sentinel_pool(sentinels_pool)


class SentinelTransport(_PollsAnyDescriptor, kombu_redis.SentinelTransport):
    Channel = SentinelChannel
