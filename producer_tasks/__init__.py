"""The producer's Celery app and everything a worker needs.

``celery -A producer_tasks worker -Q openai`` finds ``app`` here.
"""

from producer_tasks.app import app

__all__ = ["app"]
