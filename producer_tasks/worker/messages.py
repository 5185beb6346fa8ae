"""Cycle messages written the way Celery and kombu's Redis transport write them, so that the
lane's assign script can push the next cycle's message itself.

``send_task`` builds a protocol-2 task message, kombu wraps it for its Redis transport
(body in base64, delivery info, a delivery tag) and LPUSHes it onto the list named after the
queue (under ``global_keyprefix``). At hundreds of cycles in flight that is a tenth of a
worker's CPU and one more round trip per cycle. Built here, the same JSON goes into the
assign call that gives the lane its token, in the cycle's delivery round trip: the message
exists exactly when the token does (a worker that dies between the two leaves no lane
without its message), and a retried assign pushes nothing twice. The script also writes
the message's unacked entry, which kombu writes when it delivers a message (a round trip
on the consumer's thread): the message's ``unacked_registered`` property tells our
transport it exists (``producer_tasks.worker.transport``).

Only when the broker is the fleet's own Redis (``CELERY_BROKER_URL`` unset or naming the
same server and database): otherwise ``CeleryDispatcher`` sends through Celery as before.
A test keeps this JSON equal to what ``send_task`` writes.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from celery import Celery
from celery.utils.nodenames import anon_nodename
from kombu.utils.uuid import uuid

from producer_tasks.state.scripts import QueuedMessage
from producer_tasks.worker.routing import CYCLE_TASK

_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
REGISTERED = "unacked_registered"  # a property of ours: see producer_tasks.worker.transport


def cycle_kwargs(*, provider: str, epoch: int, lane: int, token: str) -> dict[str, Any]:
    """The keyword arguments of one ``producer.cycle`` task."""
    return {"provider": provider, "epoch": epoch, "lane": lane, "token": token}


class CycleMessages:
    """Builds the broker's JSON of one cycle task message (``producer.cycle``)."""

    def __init__(self, app: Celery) -> None:
        options: dict[str, Any] = app.conf.broker_transport_options or {}
        self.prefix = str(options.get("global_keyprefix", ""))
        self.unacked_key = self.prefix + str(options.get("unacked_key", "unacked"))  # kombu's names
        self.unacked_index_key = self.prefix + str(options.get("unacked_index_key", "unacked_index"))
        self.origin = str(anon_nodename())  # the origin send_task writes
        self.reply_to = uuid()  # Celery's per-thread oid; nobody replies (results are ignored)

    def build(self, *, provider: str, epoch: int, lane: int, token: str) -> QueuedMessage:
        """The message for ``provider``'s queue; the token is its task id and delivery tag."""
        kwargs = cycle_kwargs(provider=provider, epoch=epoch, lane=lane, token=token)
        body = json.dumps([[], kwargs, _EMBED]).encode()
        shown = repr(kwargs)
        message = {
            "body": base64.b64encode(body).decode(),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": {
                "lang": "py",
                "task": CYCLE_TASK,
                "id": token,
                "shadow": None,
                "eta": None,
                "expires": None,
                "group": None,
                "group_index": None,
                "retries": 0,
                "timelimit": [None, None],
                "root_id": token,
                "parent_id": None,
                "argsrepr": "()",
                "kwargsrepr": shown,
                "origin": self.origin,
                "ignore_result": True,
                "replaced_task_nesting": 0,
                "stamped_headers": None,
                "stamps": {},
            },
            "properties": {
                "correlation_id": token,
                "reply_to": self.reply_to,
                "argsrepr": "()",
                "kwargsrepr": shown,
                "delivery_mode": 2,
                "delivery_info": {"exchange": "", "routing_key": provider},
                "priority": 0,
                "body_encoding": "base64",
                "delivery_tag": token,  # unique per message, as kombu's own uuid4
                REGISTERED: True,  # the assign script registers it as delivered (its unacked entry)
            },
        }
        return QueuedMessage(
            list_key=self.prefix + provider,
            payload=json.dumps(message),
            unacked_key=self.unacked_key,
            unacked_index_key=self.unacked_index_key,
        )
