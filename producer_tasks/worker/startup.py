"""How ``celery -A producer_tasks worker|beat|flower`` starts, or refuses to: as ``producer`` does.

A bad setting is one line naming it (with the did-you-mean) and exit code 2, not a
traceback; a worker whose ``-Q`` leaves it no provider it can call exits with code 2 and
says why (``PRODUCER_WORKER_IDLE_OK=true`` keeps it up, idle, for operators who want that).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import click

from producer_tasks.errors import ConfigurationError
from producer_tasks.settings import Settings, get_settings

log = logging.getLogger(__name__)
EXIT_CONFIGURATION = 2  # as `producer` and argparse: the command line or the environment is wrong


def settings_or_exit() -> Settings:
    """The process's settings. Under Celery's command line (a click context is current while
    it imports the app), a ConfigurationError is one line on stderr and exit code 2; imported
    from anywhere else, the error is raised as usual."""
    try:
        return get_settings()
    except ConfigurationError as exc:
        if click.get_current_context(silent=True) is None:
            raise
        print(f"celery -A producer_tasks: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_CONFIGURATION) from None


def drop_service_links(environ: MutableMapping[str, str]) -> list[str]:
    """Kubernetes' service links turn a Service named ``flower`` into
    ``FLOWER_PORT=tcp://<ip>:5555``, which Flower reads as its ``--port`` and exits on (a known
    Flower problem). Such a value is never one of Flower's settings: dropped, and named."""
    dropped = [
        k for k, v in environ.items() if k.startswith("FLOWER_") and v.startswith(("tcp://", "udp://"))
    ]
    for name in dropped:
        del environ[name]
    return dropped


def unservable(settings: Settings, queue: str) -> str | None:
    """Why this process cannot serve ``queue`` (None: it can)."""
    if settings.is_configured(queue):
        return None
    spec = settings.providers.get(queue)
    if spec is None:
        return f"no provider is named {queue!r} (known: {', '.join(settings.provider_names)})"
    return f"{spec.api_key_env} is not set here"


def select_servable_queues(settings: Settings, queues: Any) -> list[str]:
    """Deselect (Celery's ``app.amqp.queues.deselect``) the queues this worker cannot serve,
    before its consumer starts. Nothing left: SystemExit(2) with the reason, which Celery's
    worker turns into a clean stop with that exit code; unless PRODUCER_WORKER_IDLE_OK."""
    selected = list(queues.consume_from)
    reasons = {queue: why for queue in selected if (why := unservable(settings, queue)) is not None}
    for queue, why in reasons.items():
        log.warning("not consuming queue %r: %s", queue, why)
    if reasons:
        queues.deselect(list(reasons))
    servable = [queue for queue in selected if queue not in reasons]
    if not servable and not settings.worker_idle_ok:
        why = "; ".join(f"{queue}: {reason}" for queue, reason in reasons.items())
        message = (
            f"this worker has no queue it can serve ({why}); set PRODUCER_WORKER_IDLE_OK=true to wait anyway"
        )
        log.critical("%s", message)
        print(f"celery -A producer_tasks worker: {message}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_CONFIGURATION)
    return servable
