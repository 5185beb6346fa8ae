"""The producer's Celery app and everything a worker needs.

``celery -A producer_tasks worker -Q openai`` finds ``app`` here. It is loaded on first
access, so importing a light module (``producer_tasks.settings``, ``producer_tasks.state``)
does not import Celery or the provider SDKs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from celery import Celery

    app: Celery

__all__ = ["app"]


def __getattr__(name: str) -> Any:
    if name == "app":
        from producer_tasks.worker.app import app

        return app
    raise AttributeError(f"module 'producer_tasks' has no attribute {name!r}")
