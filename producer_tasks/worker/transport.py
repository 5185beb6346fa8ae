"""kombu's Redis transport, with one repair: a worker survives its broker going away.

When the broker connection is lost with messages delivered but not acknowledged (every
running cycle: late acks), Celery collects the connection, which detaches the transport
from its client, and then closes it; closing the consumer's channel tries to restore the
unacknowledged messages through that detached client and raises ``AttributeError``
(``'NoneType' object has no attribute 'hostname'``), which Celery treats as unrecoverable:
the worker exits instead of reconnecting. Seen with a Redis restart mid-run.

Here a channel whose transport lost its client skips that restore. Nothing is lost: the
messages stay in the broker's unacked set (restored after the visibility timeout, where
they are no-ops) and the lanes they carried are restored by the fleet's own reconcile.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    def close(self) -> None:
        transport: Any = self.connection
        if transport is not None and getattr(transport, "client", None) is None:
            self.do_restore = False  # detached by a collect after a lost connection
        super().close()  # type: ignore[no-untyped-call]


class Transport(kombu_redis.Transport):
    Channel = Channel
