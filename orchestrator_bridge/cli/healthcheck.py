"""``producer healthcheck worker|beat``: a probe for the process in this container.

Reads the liveness file the worker's heartbeat or beat's tick writes (``producer_tasks.liveness``):
exit 0 when it is fresh, 1 otherwise, with one line saying which. Loads neither Celery nor
Redis, so a probe costs a Python start and one file read. ``--redis`` also asks that Redis
answered the process within the same age (a readiness check; for liveness leave it off, or a
Redis outage restarts every worker).
"""

from __future__ import annotations

import argparse

from producer_tasks.liveness import liveness_path, read_liveness
from producer_tasks.settings import get_settings


def run_healthcheck(args: argparse.Namespace) -> int:
    path = liveness_path(get_settings(), args.role)
    note = read_liveness(path)
    if note is None:
        print(f"{args.role}: not alive: no liveness file at {path} (not started yet, or stopped)")
        return 1
    redis = (
        "never reached Redis" if note.redis_age_s is None else f"Redis answered {note.redis_age_s:.1f}s ago"
    )
    line = f"{args.role} (pid {note.pid}): last heartbeat {note.age_s:.1f}s ago, {redis}"
    if note.age_s > args.max_age:
        print(f"{line}: not alive (older than {args.max_age:g}s)")
        return 1
    if args.need_redis and (note.redis_age_s is None or note.redis_age_s > args.max_age):
        print(f"{line}: not ready (Redis not reached within {args.max_age:g}s)")
        return 1
    print(f"{line}: ok")
    return 0
