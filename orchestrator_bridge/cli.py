"""The ``producer`` console script: ``run``, ``bridge``, ``orchestrator``, ``status``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from producer_tasks.errors import ConfigurationError, ProducerError
from producer_tasks.settings import parse_addr

if TYPE_CHECKING:
    from orchestrator_bridge.orchestrator import OrchestratorOptions

log = logging.getLogger("producer")
COMMANDS = ("run", "bridge", "orchestrator", "status")  # fixed by DESIGN.md


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def weight(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    try:
        if not sep or not name:
            raise ValueError
        return name.strip(), float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not provider=weight (e.g. openai=2)") from None


def address(text: str) -> tuple[str, int]:
    try:
        return parse_addr(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be above 0")
    return value


def add_topic_options(parser: argparse.ArgumentParser, *, topic_required: bool = True) -> None:
    parser.add_argument("--topic", required=topic_required, help="what to generate attributes for")
    parser.add_argument("--prompt", help="prompt template; {topic} and {batch_size} are substituted")
    parser.add_argument(
        "--weight",
        type=weight,
        action="append",
        default=[],
        metavar="PROVIDER=W",
        help="provider weight, repeatable (default: every provider in use, equally)",
    )
    parser.add_argument("--batch-size", type=positive_int, default=20)
    parser.add_argument("--max-tokens", type=positive_int, default=1024)
    parser.add_argument("--temperature", type=float, default=0.9)
    parser.add_argument("--count", type=positive_int, help="stop after N unique attributes")
    parser.add_argument("--duration", type=positive_float, help="stop after S seconds")
    parser.add_argument("--output", type=Path, help="JSONL file of unique attributes")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="producer",
        description="The distributed attribute producer (Celery workers, bridge, orchestrator).",
    )
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING, ERROR (default: INFO; WARNING for run)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser("run", help="the whole system locally, in one command")
    add_topic_options(run, topic_required=False)
    run.add_argument("--concurrency", type=positive_int, help="generation cycles in flight (fleet-wide)")
    run.add_argument(
        "--orchestrator",
        type=address,
        metavar="HOST:PORT",
        help="a real orchestrator (default: the built-in reference orchestrator)",
    )

    commands.add_parser("bridge", help="run the bridge to the orchestrator (ORCHESTRATOR_ADDR)")

    status = commands.add_parser("status", help="the fleet as Redis sees it")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument("--watch", action="store_true", help="refresh every 2 seconds until Ctrl-C")

    orchestrator = commands.add_parser("orchestrator", help="run the reference orchestrator")
    orchestrator.add_argument("--listen", type=address, default=("127.0.0.1", 7979), metavar="HOST:PORT")
    add_topic_options(orchestrator)
    orchestrator.add_argument("--batch-log", type=Path, help="JSONL file of every batch received")
    orchestrator.add_argument(
        "--bloom-interval", type=float, default=5.0, help="seconds between bloom filters sent (0: never)"
    )
    return parser


def job_options(args: argparse.Namespace, **extra: Any) -> OrchestratorOptions:
    """The topic options shared by ``run`` and ``orchestrator``."""
    from orchestrator_bridge.orchestrator import DEFAULT_PROMPT, OrchestratorOptions

    return OrchestratorOptions(
        topic=args.topic or "",
        prompt=args.prompt or DEFAULT_PROMPT,
        weights=dict(args.weight),
        batch_size=args.batch_size,
        max_tokens=args.max_tokens,
        temperature=args.temperature,
        count=args.count,
        duration_s=args.duration,
        output=args.output,
        **extra,
    )


def run_local(args: argparse.Namespace) -> int:
    from orchestrator_bridge.local import LocalRun, RunOptions

    if args.orchestrator is None and not args.topic:
        print(
            "producer run: --topic is required (unless --orchestrator names one that sets it)",
            file=sys.stderr,
        )
        return 2
    if args.orchestrator is None and args.count is None and args.duration is None:
        print("producer run: give --count N or --duration S (or stop it with Ctrl-C)", file=sys.stderr)
    options = RunOptions(
        job=job_options(args),
        concurrency=args.concurrency,
        orchestrator=f"{args.orchestrator[0]}:{args.orchestrator[1]}" if args.orchestrator else None,
    )
    return LocalRun(options).run()


def run_status(args: argparse.Namespace) -> int:
    import time

    from producer_tasks.fleet import Fleet
    from producer_tasks.settings import get_settings
    from producer_tasks.status import render, snapshot

    fleet = Fleet.from_settings(get_settings())
    while True:
        status = snapshot(fleet)
        text = status.model_dump_json(indent=2) if args.json else render(status)
        if args.watch and not args.json and sys.stdout.isatty():
            print("\033[2J\033[H", end="")
        print(text, flush=True)
        if not args.watch:
            return 0
        time.sleep(2)


def run_bridge() -> int:
    from orchestrator_bridge.bridge import SHUTDOWN_GRACE_S, Bridge
    from producer_tasks.fleet import Fleet
    from producer_tasks.runtime import CeleryDispatcher
    from producer_tasks.settings import get_settings

    settings = get_settings()
    from producer_tasks.app import app

    bridge = Bridge(settings, Fleet.from_settings(settings), CeleryDispatcher(app))

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, bridge.stopping.set)
        task = asyncio.create_task(bridge.run())
        await bridge.stopping.wait()
        log.info("shutting down (at most %.0fs)", SHUTDOWN_GRACE_S)
        try:
            await asyncio.wait_for(task, timeout=SHUTDOWN_GRACE_S)
        except TimeoutError:
            log.warning("bridge did not finish in time; cancelled")

    log.info("bridge %s -> orchestrator %s", settings.id, settings.orchestrator_addr)
    asyncio.run(main())
    return 0


def run_orchestrator(args: argparse.Namespace) -> int:
    from orchestrator_bridge.orchestrator import ReferenceOrchestrator

    options = job_options(args, batch_log=args.batch_log, bloom_interval_s=args.bloom_interval or None)
    if not options.weights:
        options = replace(options, weights={"mock": 1.0})
    orchestrator = ReferenceOrchestrator(options)
    host, port = args.listen

    async def main() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.create_task(orchestrator.run(host, port))
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: asyncio.ensure_future(orchestrator.stop_all()))
        reporter = asyncio.create_task(report(orchestrator))
        await task
        reporter.cancel()

    async def report(o: ReferenceOrchestrator) -> None:
        while True:
            await asyncio.sleep(2)
            log.info("progress: %s", o.progress.line())

    log.info("reference orchestrator listening on %s:%d for topic %r", host, port, args.topic)
    asyncio.run(main())
    log.info("done: %s", orchestrator.progress.line())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    setup_logging(args.log_level or ("WARNING" if args.command == "run" else "INFO"))
    try:
        if args.command == "run":
            return run_local(args)
        if args.command == "bridge":
            return run_bridge()
        if args.command == "status":
            return run_status(args)
        if args.command == "orchestrator":
            return run_orchestrator(args)
    except ConfigurationError as exc:
        print(f"producer: {exc}", file=sys.stderr)
        return 2
    except ProducerError as exc:
        print(f"producer: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 2


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
