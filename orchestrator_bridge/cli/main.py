"""The ``producer`` console script: ``run``, ``bridge``, ``orchestrator``, ``status``, ``healthcheck``.

This entry module is light (argument parsing only): each command's module is imported
when that command runs, so ``producer --help`` loads neither Celery nor the SDKs.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import cast

from orchestrator_bridge.orchestrator import STDOUT
from orchestrator_bridge.version import version
from producer_tasks.addresses import parse_addr
from producer_tasks.errors import ConfigurationError, ProducerError
from producer_tasks.liveness import DEFAULT_MAX_AGE_S, ROLES

log = logging.getLogger("producer")
# command -> "module:function" (the public interface, README); imported when run
COMMANDS = {
    "run": "orchestrator_bridge.cli.run:run_command",
    "bridge": "orchestrator_bridge.cli.processes:run_bridge",
    "orchestrator": "orchestrator_bridge.cli.processes:run_orchestrator",
    "status": "orchestrator_bridge.cli.status:run_status",
    "healthcheck": "orchestrator_bridge.cli.healthcheck:run_healthcheck",
}


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def weight(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    try:
        if not sep or not name.strip():
            raise ValueError
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not provider=weight (e.g. openai=2)") from None
    if not number >= 0 or number == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: a weight is a number of 0 or more")
    return name.strip(), number


def temperature(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value <= 2:
        raise argparse.ArgumentTypeError(f"{text!r}: the temperature is between 0 and 2")
    return value


def log_level(text: str) -> str:
    if text.upper() not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(LOG_LEVELS)}")
    return text.upper()


def writable_file(text: str) -> Path:
    """A file we can create or append to (checked now, not after a run's work is done); ``-``
    is standard output."""
    if text == "-":
        return STDOUT
    path = Path(text)
    folder = path.parent
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(f"cannot write {text}: no folder {folder}")
    if path.is_dir() or not os.access(path if path.exists() else folder, os.W_OK):
        raise argparse.ArgumentTypeError(f"cannot write {text}: permission denied or not a file")
    return path


def readable_file(text: str) -> Path:
    path = Path(text)
    if not path.is_file() or not os.access(path, os.R_OK):
        raise argparse.ArgumentTypeError(f"cannot read {text}: no such file, or permission denied")
    return path.resolve()


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


def add_topic_options(parser: argparse.ArgumentParser, *, local_run: bool = False) -> None:
    """The job's options (``run``, whose fleet is local, and ``orchestrator``)."""
    topic_required = not local_run
    parser.add_argument("--topic", required=topic_required, help="what to generate attributes for")
    parser.add_argument(
        "--prompt",
        help="prompt template; {topic} and {batch_size} are substituted (default: the built-in one)",
    )
    parser.add_argument(
        "--weight",
        type=weight,
        action="append",
        default=[],
        metavar="PROVIDER=W",
        help="provider weight, repeatable (default: every provider in use, equally)",
    )
    for flag, kind, default, text in (
        ("--batch-size", positive_int, 20, "attributes asked for per call"),
        ("--max-tokens", positive_int, 1024, "completion tokens per call"),
        ("--temperature", temperature, 0.9, "sampling temperature, 0-2"),
    ):
        parser.add_argument(flag, type=kind, default=default, help=f"{text} (default: %(default)s)")
    parser.add_argument(
        "--count",
        type=positive_int,
        metavar="N",
        help="stop after exactly N unique attributes"
        + ("; no new provider call starts once the fleet has them" if local_run else "")
        + " (default: no limit)",
    )
    parser.add_argument(
        "--duration", type=positive_float, metavar="S", help="stop after S seconds (default: none)"
    )
    parser.add_argument(
        "--output",
        type=writable_file,
        metavar="FILE",
        help="JSON lines of the unique attributes; '-' for stdout (default: "
        + ("stdout when it is not a terminal, else not kept)" if local_run else "not kept)"),
    )


def add_run_parser(add_parser: Callable[..., argparse.ArgumentParser]) -> None:
    run = add_parser(
        "run",
        help="the whole system locally, in one command",
        description="Starts an embedded Redis (unless REDIS_URL is set), a worker per provider in use "
        "(the mock unless API keys are set), beat, the bridge and the reference orchestrator; stops "
        "when --count or --duration is reached, or on Ctrl-C, and prints a summary.",
    )
    add_topic_options(run, local_run=True)
    run.add_argument(
        "--concurrency",
        type=positive_int,
        metavar="N",
        help="generation cycles in flight, fleet-wide (default: PRODUCER_CONCURRENCY, 8)",
    )
    run.add_argument(
        "--orchestrator",
        type=address,
        metavar="HOST:PORT",
        help="a real orchestrator (default: the built-in reference orchestrator)",
    )
    run.add_argument(
        "--budget-usd",
        type=positive_float,
        metavar="USD",
        help="stop once the run's calls cost this much, at the providers' prices (default: no budget)",
    )
    run.add_argument(
        "--providers-file",
        type=readable_file,
        metavar="FILE",
        help="TOML file of named providers (sets PRODUCER_PROVIDERS_FILE; README: Named providers)",
    )


def add_healthcheck_parser(add_parser: Callable[..., argparse.ArgumentParser]) -> None:
    health = add_parser(
        "healthcheck",
        help="probe the worker or beat of this container (exit 0: alive)",
        description="Reads the liveness file a worker's heartbeat or beat's tick writes in "
        "PRODUCER_HEALTH_DIR: exit 0 when fresh, 1 otherwise (a Kubernetes exec probe).",
    )
    health.add_argument("role", choices=ROLES, help="which process")
    health.add_argument(
        "--max-age",
        type=positive_float,
        default=DEFAULT_MAX_AGE_S,
        metavar="S",
        help="a heartbeat older than this fails (default: %(default)s)",
    )
    health.add_argument(
        "--redis", dest="need_redis", action="store_true", help="also require that Redis answered within S"
    )


def add_orchestrator_parser(add_parser: Callable[..., argparse.ArgumentParser]) -> None:
    orchestrator = add_parser(
        "orchestrator",
        help="run the reference orchestrator",
        description="A development orchestrator speaking the real protocol: sends StartTopic to every "
        "bridge that connects, de-duplicates what arrives, sends bloom filters, stops at --count or "
        "--duration (= python -m orchestrator_bridge.orchestrator).",
    )
    orchestrator.add_argument(
        "--listen",
        type=address,
        default=("127.0.0.1", 7979),
        metavar="HOST:PORT",
        help="address to listen on; bridges connect here (ORCHESTRATOR_ADDR) (default: 127.0.0.1:7979)",
    )
    add_topic_options(orchestrator)
    orchestrator.add_argument(
        "--batch-log", type=writable_file, metavar="FILE", help="JSON lines of every batch received"
    )
    orchestrator.add_argument(
        "--bloom-interval",
        type=float,
        default=5.0,
        metavar="S",
        help="seconds between bloom filters sent, 0 for never (default: %(default)s)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="producer",
        description="The distributed attribute producer (Celery workers, bridge, orchestrator).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    parser.add_argument(
        "--log-level", type=log_level, help="DEBUG, INFO, WARNING, ERROR (default: INFO; WARNING for run)"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_run_parser(commands.add_parser)
    commands.add_parser(
        "bridge",
        help="run the bridge to the orchestrator (ORCHESTRATOR_ADDR)",
        description="The fleet's link to the orchestrator: exactly one per producer id. Settings come "
        "from the environment (README: Configuration); /metrics, /healthz and /readyz on "
        "PRODUCER_METRICS_PORT (= python -m orchestrator_bridge).",
    )
    status = commands.add_parser(
        "status",
        help="the fleet as Redis sees it",
        description="Reads the fleet from REDIS_URL, or from the producer run on this machine.",
    )
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument("--watch", action="store_true", help="refresh every 2 seconds until Ctrl-C")
    add_healthcheck_parser(commands.add_parser)
    add_orchestrator_parser(commands.add_parser)
    return parser


def command(name: str) -> Callable[[argparse.Namespace], int]:
    module, _, function = COMMANDS[name].partition(":")
    return cast(Callable[[argparse.Namespace], int], getattr(importlib.import_module(module), function))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    setup_logging(args.log_level or ("WARNING" if args.command == "run" else "INFO"))
    try:
        return command(args.command)(args)
    except ConfigurationError as exc:
        print(f"producer: {exc}", file=sys.stderr)
        return 2
    except ProducerError as exc:
        print(f"producer: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `producer status | head`: the reader left; so do we, quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
