"""The Celery app (``celery -A producer_tasks worker -Q openai``).

Configuration is the top-level ``celeryconfig`` module; the tasks and the worker hooks
are loaded through ``include`` when a worker or beat starts.
"""

from __future__ import annotations

import logging
import os

from celery import Celery

from producer_tasks.worker.startup import drop_service_links

# As `celery -A producer_tasks` loads the app, before Flower reads its FLOWER_* options
if _dropped := drop_service_links(os.environ):
    logging.getLogger(__name__).warning("ignored Kubernetes service links: %s", ", ".join(_dropped))
app = Celery("producer_tasks", include=["producer_tasks.worker.tasks", "producer_tasks.worker.signals"])
app.config_from_object("celeryconfig")

__all__ = ["app"]
