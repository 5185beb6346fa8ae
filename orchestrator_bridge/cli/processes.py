"""``producer bridge`` and ``producer orchestrator``: long-running processes with clean stops."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from dataclasses import replace

from orchestrator_bridge.bridge import SHUTDOWN_GRACE_S, Bridge
from orchestrator_bridge.cli.options import job_options
from orchestrator_bridge.orchestrator import ReferenceOrchestrator
from producer_tasks.settings import get_settings
from producer_tasks.state.fleet import Fleet
from producer_tasks.worker.app import app
from producer_tasks.worker.current import CeleryDispatcher

log = logging.getLogger("producer")
PROGRESS_INTERVAL_S = 2.0


def run_bridge(_: argparse.Namespace) -> int:
    settings = get_settings()
    bridge = Bridge(settings, Fleet.from_settings(settings), CeleryDispatcher.from_settings(app, settings))

    async def main() -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, bridge.stopping.set)
        task = asyncio.create_task(bridge.run())
        stopping = asyncio.create_task(bridge.stopping.wait())
        await asyncio.wait((task, stopping), return_when=asyncio.FIRST_COMPLETED)
        if task.done():  # the bridge's main task died: exit non-zero so a supervisor restarts us
            stopping.cancel()
            error = task.exception()
            log.error("the bridge stopped unexpectedly: %s", error or "its loop returned", exc_info=error)
            return 1
        log.info("shutting down (at most %.0fs)", SHUTDOWN_GRACE_S)
        try:
            await asyncio.wait_for(task, timeout=SHUTDOWN_GRACE_S)
        except TimeoutError:
            log.warning("bridge did not finish in time; cancelled")
        return 0

    log.info("bridge %s -> orchestrator %s", settings.id, settings.orchestrator_addr)
    return asyncio.run(main())


def run_orchestrator(args: argparse.Namespace) -> int:
    options = job_options(args, batch_log=args.batch_log, bloom_interval_s=args.bloom_interval or None)
    if not options.weights:
        options = replace(options, weights={"mock": 1.0})
    orchestrator = ReferenceOrchestrator(options)
    host, port = args.listen

    async def report() -> None:
        while True:
            await asyncio.sleep(PROGRESS_INTERVAL_S)
            log.info("progress: %s", orchestrator.progress.line())

    async def main() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.create_task(orchestrator.run(host, port))
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: asyncio.ensure_future(orchestrator.stop_all()))
        reporter = asyncio.create_task(report())
        await task
        reporter.cancel()

    log.info("reference orchestrator listening on %s:%d for topic %r", host, port, args.topic)
    asyncio.run(main())
    log.info("done: %s", orchestrator.progress.line())
    return 0
