"""The worker process's runtime: created on first use, replaced after a fork."""

from __future__ import annotations

import threading
import uuid
from functools import partial

from celery import Celery

from producer_tasks.runtime import Runtime
from producer_tasks.settings import Settings, get_settings
from producer_tasks.state.client import broker_is_fleet
from producer_tasks.state.scripts import Acknowledgement, CommandCall, QueuedMessage
from producer_tasks.worker.app import app
from producer_tasks.worker.messages import CycleMessages, cycle_kwargs
from producer_tasks.worker.routing import CYCLE_TASK
from producer_tasks.worker.transport import SETTLED

_lock = threading.Lock()
# This worker process's life: pool children inherit it (forked after import), a restarted
# worker of the same name gets a new one, so it never inherits its previous life's lanes.
INCARNATION = uuid.uuid4().hex[:8]
_runtime: Runtime | None = None


class _Sent:
    """What sending a cycle returns: nobody waits on it, so no result backend is touched
    (Celery's own ``AsyncResult`` opens one per thread, per greenlet under gevent)."""

    __slots__ = ("id", "ignored")

    def __init__(self, task_id: str) -> None:
        self.id = task_id
        self.ignored = True


class CeleryDispatcher:
    """Sends cycle messages through the Celery app (task id = the lane's token), or prepares
    them for the lane's assign script to push when the broker is the fleet's Redis
    (``producer_tasks.worker.messages``)."""

    def __init__(self, celery_app: Celery, *, broker_is_fleet: bool = False) -> None:
        self.app = celery_app
        self.messages = CycleMessages(celery_app) if broker_is_fleet else None

    @classmethod
    def from_settings(cls, celery_app: Celery, settings: Settings) -> CeleryDispatcher:
        """Pushing its messages from the assign script when the broker is the fleet's Redis."""
        return cls(celery_app, broker_is_fleet=broker_is_fleet(settings))

    def prepare(self, *, provider: str, epoch: int, lane: int, token: str) -> QueuedMessage | None:
        if self.messages is None:
            return None
        return self.messages.build(provider=provider, epoch=epoch, lane=lane, token=token)

    def acknowledgement(self, delivery_tag: str | None) -> Acknowledgement | None:
        """The acknowledgement of a delivered cycle message, to run in the cycle's delivery
        round trip (``producer_tasks.worker.transport``); None unless the broker is the
        fleet's Redis and the message has a tag (not eager)."""
        messages = self.messages
        if messages is None or not delivery_tag:
            return None
        return Acknowledgement(
            calls=(
                CommandCall(("ZREM", messages.unacked_index_key, delivery_tag)),
                CommandCall(("HDEL", messages.unacked_key, delivery_tag)),
            ),
            done=partial(SETTLED.add, delivery_tag),
        )

    def send(self, *, provider: str, epoch: int, lane: int, token: str) -> None:
        kwargs = cycle_kwargs(provider=provider, epoch=epoch, lane=lane, token=token)
        self.app.send_task(
            CYCLE_TASK,
            kwargs=kwargs,
            queue=provider,
            task_id=token,
            # what Flower shows: written here, not by Celery's saferepr of every message
            argsrepr="()",
            kwargsrepr=repr(kwargs),
            # the queue is declared by the workers that consume it; kombu would bind a copy of
            # it to the channel before every message (a direct queue needs no declaration to
            # receive: the message goes to the list named after it)
            declare=[],
            # the cycle task ignores its result; by name Celery does not know that and would
            # subscribe to the result channel of every message it sends
            ignore_result=True,
            result_cls=_Sent,
            add_to_parent=False,  # the next cycle is not the sending cycle's child
        )


def get_runtime() -> Runtime:
    """The process's runtime, created on first use."""
    global _runtime
    with _lock:
        if _runtime is None:
            settings = get_settings()
            _runtime = Runtime.create(settings, CeleryDispatcher.from_settings(app, settings))
        return _runtime


def set_runtime(runtime: Runtime | None) -> None:
    """Replace the runtime (tests; a forked child process starts with none)."""
    global _runtime
    with _lock:
        _runtime = runtime


def incarnation(hostname: str | None) -> str:
    """The name lanes and the worker registry know this worker by: ``name#incarnation``."""
    return f"{hostname or 'local'}#{INCARNATION}"
