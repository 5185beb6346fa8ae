"""The Celery glue: the app, its tasks and routing, worker hooks, heartbeat and beat.

Everything here is thin: the work is ``producer_tasks.generation`` (a cycle),
``producer_tasks.lanes`` (lane rules) and ``producer_tasks.state`` (Redis).
"""
