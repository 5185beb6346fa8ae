"""Task routing: every task that names a provider goes to that provider's queue."""

from __future__ import annotations

from typing import Any

CYCLE_TASK = "producer.cycle"
HEALTH_CHECK_TASK = "producer.health_check"


def route_by_provider(
    name: str, args: Any, kwargs: dict[str, Any] | None, options: Any, task: Any = None, **_: Any
) -> dict[str, str] | None:
    """Celery router (``task_routes``): ``provider=openai`` -> queue ``openai``."""
    provider = (kwargs or {}).get("provider")
    if name.startswith("producer.") and isinstance(provider, str) and provider:
        return {"queue": provider}
    return None
