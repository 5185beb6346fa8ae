"""Celery configuration of the producer fleet, from the environment (read once).

Broker and result backend default to ``REDIS_URL``; JSON only; late acknowledgement with
requeue when a worker dies; a visibility timeout well above the longest cycle; prefetch
of one; every task routed to its provider's queue; beat sends health checks.
"""

from __future__ import annotations

from typing import Any

from producer_tasks.settings import PROVIDERS, get_settings

_settings = get_settings()

broker_url = _settings.broker_url
result_backend = _settings.result_backend
broker_connection_retry_on_startup = True
# An unacknowledged message returns to its queue after this; it must exceed the longest
# cycle (the provider timeout plus Redis work), or a slow cycle would run twice.
broker_transport_options: dict[str, Any] = {
    "visibility_timeout": int(max(3600, 4 * _settings.request_timeout_s)),
}
result_backend_transport_options = {"retry_policy": {"timeout": 5.0}}

task_serializer = "json"
result_serializer = "json"
event_serializer = "json"
accept_content = ["json"]
result_accept_content = ["json"]

task_ignore_result = True
task_acks_late = True
task_reject_on_worker_lost = True
task_acks_on_failure = True
task_acks_on_timeout = True
worker_prefetch_multiplier = 1
task_routes = ("producer_tasks.worker.routing.route_by_provider",)
task_create_missing_queues = True
task_default_queue = "mock"

# Task events cost about a quarter of a worker's CPU per cycle, so they are off by
# default; Flower switches them on in the workers it watches (its --enable_events
# default), and `celery -A producer_tasks worker -E` forces them on.
worker_send_task_events = False
task_send_sent_event = False

timezone = "UTC"
enable_utc = True

beat_scheduler = "producer_tasks.worker.beat:FleetScheduler"
beat_schedule = {
    f"health-check-{provider}": {
        "task": "producer.health_check",
        "schedule": _settings.health_check_interval_s,
        "kwargs": {"provider": provider},
        "options": {"queue": provider, "expires": _settings.health_check_interval_s * 2},
    }
    for provider in PROVIDERS
}
