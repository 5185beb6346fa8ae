"""Celery configuration of the producer fleet, from the environment (read once).

Broker and result backend default to ``REDIS_URL``; JSON only; late acknowledgement with
requeue when a worker dies; a visibility timeout well above the longest cycle; prefetch
of one; every task routed to its provider's queue; beat sends health checks.
"""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from kombu.transport import TRANSPORT_ALIASES as _TRANSPORT_ALIASES

from producer_tasks.state.client import CONNECT_TIMEOUT_S, HEALTH_CHECK_INTERVAL_S, SOCKET_TIMEOUT_S, is_tcp
from producer_tasks.state.keys import Keys
from producer_tasks.worker.startup import settings_or_exit

_settings = settings_or_exit()  # a bad setting: one line and exit code 2 under `celery`

# kombu's Redis transport with repairs (worker/transport.py): a lost broker connection never
# ends a worker, a busy pool waits, one client per pool, gevent polls any socket. It is
# registered under kombu's own Redis schemes (``TRANSPORT_ALIASES``, kombu's documented
# mapping of aliases to transport classes), so the broker URL stays ``redis://``,
# ``rediss://``, ``sentinel://`` or ``redis+socket://`` and every tool that reads the URL's
# scheme (Flower's Broker tab and /api/queues/length, ``celery inspect|status|purge``) sees a
# Redis broker. Only this process's aliases change: the processes that load this module.
_TRANSPORT_ALIASES.update(
    {
        "redis": "producer_tasks.worker.transport:Transport",
        "rediss": "producer_tasks.worker.transport:Transport",
        "sentinel": "producer_tasks.worker.transport:SentinelTransport",
    }
)


def _socket_url(url: str, transport: str) -> str:
    """kombu and Celery do not read redis-py's ``unix:///path?db=N`` (``producer run``'s
    embedded Redis); they read ``redis+socket:///path?virtual_host=N``."""
    parts = urlsplit(url)
    db = dict(parse_qsl(parts.query)).get("db", "0")
    return f"{transport}+socket://{parts.netloc}{parts.path}?virtual_host={db}"


broker_url = _settings.broker_url
if broker_url.startswith("unix://"):
    broker_url = _socket_url(broker_url, "redis")
result_backend = _settings.result_backend
if result_backend.startswith("unix://"):
    result_backend = _socket_url(result_backend, "redis")
broker_connection_retry_on_startup = True


# Socket timeouts, keepalive (TCP only: a Unix socket, as `producer run` uses, takes none)
# and a health check: a publish or a poll never waits forever on a connection that died in a
# failover.
def _sockets(url: str) -> dict[str, Any]:
    if not is_tcp(url):  # a local Unix socket (`producer run`) does not fail over
        return {}
    return {
        "socket_timeout": SOCKET_TIMEOUT_S,
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
        "socket_keepalive": True,
        "health_check_interval": HEALTH_CHECK_INTERVAL_S,
    }


# An unacknowledged message returns to its queue after the visibility timeout; it must
# exceed the longest cycle (the provider timeout plus Redis work), or a slow cycle would run twice.
# Every broker and result key under this producer's prefix (prod:<id>:broker:): several
# producers share one Redis without taking each other's messages; the queue names users
# see (`-Q openai`, Flower) stay the same.
_PREFIX = Keys(_settings.id).broker_prefix
broker_transport_options: dict[str, Any] = {
    "visibility_timeout": int(max(3600, 4 * _settings.request_timeout_s)),
    "global_keyprefix": _PREFIX,
    **_sockets(_settings.broker_url),
}
result_backend_transport_options: dict[str, Any] = {
    "retry_policy": {"timeout": 5.0},
    "global_keyprefix": _PREFIX,
    **_sockets(_settings.result_backend),
}
# REDIS_SENTINELS: broker and result backend ask the Sentinels for the master (sentinel://
# URLs; the master's name and the Sentinels' own password go here).
if _settings.sentinels:
    _SENTINEL: dict[str, Any] = {"master_name": _settings.redis_sentinel_master}
    if _settings.redis_sentinel_password is not None:
        _SENTINEL["sentinel_kwargs"] = {"password": _settings.redis_sentinel_password.get_secret_value()}
    if not _settings.celery_broker_url:
        broker_transport_options.update(_SENTINEL)
    if not _settings.celery_result_backend:
        result_backend_transport_options.update(_SENTINEL)
if is_tcp(_settings.result_backend):
    redis_socket_timeout = SOCKET_TIMEOUT_S
    redis_socket_connect_timeout = CONNECT_TIMEOUT_S
    redis_socket_keepalive = True
    redis_backend_health_check_interval = HEALTH_CHECK_INTERVAL_S

# rediss:// verifies the server's certificate, as the fleet's own Redis client does;
# PRODUCER_REDIS_TLS_INSECURE=true is the explicit opt-out.
_TLS = {"ssl_cert_reqs": ssl.CERT_NONE if _settings.redis_tls_insecure else ssl.CERT_REQUIRED}
if _settings.broker_url.startswith("rediss://"):
    broker_use_ssl = _TLS
if _settings.result_backend.startswith("rediss://"):
    redis_backend_use_ssl = _TLS

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
    for provider in _settings.provider_names
}
