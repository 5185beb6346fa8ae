"""The Celery app (``celery -A producer_tasks worker -Q openai``).

Configuration is the top-level ``celeryconfig`` module; the tasks and the worker hooks
are loaded through ``include`` when a worker or beat starts.
"""

from __future__ import annotations

from celery import Celery

app = Celery("producer_tasks", include=["producer_tasks.worker.tasks", "producer_tasks.worker.signals"])
app.config_from_object("celeryconfig")

__all__ = ["app"]
