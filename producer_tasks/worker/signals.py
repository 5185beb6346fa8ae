"""Worker hooks: the heartbeat's life, the garbage collector set for many calls in flight,
a fresh runtime after a fork.

A failing hook is logged, never allowed to kill the worker.
"""

from __future__ import annotations

import gc
import logging
from typing import Any

from celery import signals

from producer_tasks.generation.providers import sdk
from producer_tasks.settings import Settings, get_settings
from producer_tasks.worker.current import get_runtime, incarnation, set_runtime
from producer_tasks.worker.heartbeat import Heartbeat
from producer_tasks.worker.startup import select_servable_queues
from producer_tasks.worker.transport import SETTLED

log = logging.getLogger(__name__)
_heartbeats: list[Heartbeat] = []
GC_THRESHOLDS = (10_000, 50, 50)  # the young generations' (CPython's default: 700, 10, 10)


@signals.celeryd_after_setup.connect
def _select_servable_queues(sender: Any = None, instance: Any = None, **_: Any) -> None:
    """After ``-Q`` was applied, before the consumer starts (Celery's documented place to
    change queues): only the queues whose provider this process can call."""
    select_servable_queues(get_settings(), instance.app.amqp.queues)


@signals.worker_ready.connect
def _start_heartbeat(sender: Any = None, **_: Any) -> None:
    runtime = get_runtime()
    # only servable queues are left (``_select_servable_queues`` deselected the others)
    queues = [q.name for q in sender.task_consumer.queues] if sender is not None else []
    controller = getattr(sender, "controller", None)  # the WorkController: -c N (--autoscale: its maximum)
    slots = int(getattr(controller, "concurrency", 0) or 0)
    # before it registers: the SDK imports take seconds, and a fleet that starts its topic
    # once every worker registered must find this one taking messages
    freeze_startup_objects(runtime.settings, queues)
    heartbeat = Heartbeat(runtime, worker=incarnation(sender.hostname), queues=queues, slots=slots)
    heartbeat.tick()  # registered before the first message is taken
    heartbeat.start()
    _heartbeats.append(heartbeat)


def freeze_startup_objects(settings: Settings, queues: list[str]) -> None:
    """Import the SDKs this worker will call, move every object alive now (modules, classes,
    Celery's and the SDKs' tables: about 130,000) out of the garbage collector's sight, and
    collect the young generations less often: hundreds of calls in flight keep ~100,000
    objects alive for seconds, which the default thresholds (700, 10, 10) walked again and
    again. Measured at 256 cycles in flight: the collector's share of the worker's CPU
    went from 6.6 % to 2.3 % (docs/benchmarks.md)."""
    for queue in queues:
        spec = settings.providers.get(queue)
        if spec is not None and spec.kind != "mock":
            sdk(spec.kind)
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


@signals.worker_shutting_down.connect
def _drain_heartbeat(**_: Any) -> None:
    """Warm shutdown begins: tasks still run, so the worker stays alive but takes nothing new."""
    for heartbeat in _heartbeats:
        heartbeat.drain()


@signals.worker_shutdown.connect
def _stop_heartbeat(**_: Any) -> None:
    """The pool has finished (Celery sends this after a warm shutdown's tasks)."""
    while _heartbeats:
        _heartbeats.pop().stop()


@signals.worker_process_init.connect
def fresh_runtime_after_fork(**_: Any) -> None:
    set_runtime(None)
    SETTLED.kept = False  # a pool child: its parent acknowledges, the tags would only pile up
