"""``producer run``: the whole system on one machine, in one command.

Without ``REDIS_URL`` it starts an embedded ``redis-server`` on a private Unix socket
(removed on exit). It starts one Celery worker per provider in use, beat, the bridge and
(unless ``--orchestrator`` names a real one) the reference orchestrator; shows a live
progress line; stops cleanly when done or on Ctrl-C, leaving no process or socket
behind; and ends with a summary table per provider.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from orchestrator_bridge.cli import runfile
from orchestrator_bridge.cli.children import BEAT_COMMAND, Children, start_children
from orchestrator_bridge.cli.embedded import EmbeddedRedis, free_port
from orchestrator_bridge.cli.options import job_options
from orchestrator_bridge.cli.progress import ProgressDisplay, summary_table
from orchestrator_bridge.orchestrator import STDOUT, OrchestratorOptions, Progress, ReferenceOrchestrator
from producer_tasks.errors import ConfigurationError, ProducerError
from producer_tasks.records import ProviderStats, ProviderStatus
from producer_tasks.settings import Settings, load_settings
from producer_tasks.state.fleet import Fleet
from producer_tasks.state.status import read_bridge_status

log = logging.getLogger(__name__)
STOP_GRACE_S = 20.0
WORKER_START_TIMEOUT_S = 120.0
UNREACHABLE_AFTER_S = 20.0  # a real orchestrator the bridge never reached: the run ends
UNHEALTHY_FOR_S = 5.0  # every provider in use Unhealthy this long: the run ends
QUOTA_TTL_MS = 10_000  # the --count quota lapses this long after the run stops renewing it


@dataclass
class RunOptions:
    job: OrchestratorOptions  # what to ask for (empty weights: the providers in use, equally)
    concurrency: int | None = None
    budget_usd: float | None = None  # what this run may spend (on top of what the producer id spent)
    orchestrator: str | None = None  # host:port of a real orchestrator


def providers_in_use(settings: Settings, weights: dict[str, float]) -> list[str]:
    """The providers whose keys are set, else the mock; or those named by --weight."""
    names = settings.provider_names
    if weights:
        unknown = sorted(set(weights) - set(names))
        if unknown:
            raise ConfigurationError(
                f"unknown provider(s) in --weight: {', '.join(unknown)} (known: {', '.join(names)})"
            )
        missing = sorted(p for p, w in weights.items() if w > 0 and not settings.is_configured(p))
        if missing:
            keys = ", ".join(str(settings.spec(p).api_key_env) for p in missing)
            raise ConfigurationError(f"--weight names {', '.join(missing)} but {keys} is not set")
        chosen = [p for p in names if weights.get(p, 0) > 0]
        if not chosen:
            raise ConfigurationError("every --weight is 0: no provider would be used")
        return chosen
    real = [p for p in names if settings.spec(p).kind != "mock" and settings.is_configured(p)]
    return real or ["mock"]


@contextlib.contextmanager
def redis_for_run(environ: dict[str, str], producer_id: str) -> Iterator[dict[str, str]]:
    """The environment's Redis, or an embedded one for the duration of the run (announced in a
    runtime file, so that ``producer status`` in another shell finds it)."""
    if environ.get("REDIS_URL"):
        yield {}
        return
    server = EmbeddedRedis(unix_socket=True).start()
    try:
        with runfile.announced(producer_id, server.url):
            yield {"REDIS_URL": server.url}  # celeryconfig names the socket for Celery
    finally:
        server.stop()


@dataclass
class Stall:
    """Why a run makes no progress, once it is sure; None while it may still."""

    orchestrator_addr: str
    unhealthy_since: float | None = None
    reached: bool = False

    def check(
        self,
        orchestrator: ReferenceOrchestrator | None,
        fleet: Fleet,
        providers: list[str],
        ready_for_s: float,
    ) -> str | None:
        if orchestrator is not None:
            if orchestrator.progress.last_error is not None:
                return f"the producer rejected the topic: {orchestrator.progress.last_error}"
        else:
            self.reached = self.reached or fleet_bridge_connected(fleet)
            if not self.reached and ready_for_s > UNREACHABLE_AFTER_S:
                return f"the bridge could not reach the orchestrator at {self.orchestrator_addr}"
        healths = fleet.read_healths(providers)
        if all(h.status is ProviderStatus.UNHEALTHY for h in healths.values()):
            now = time.monotonic()
            self.unhealthy_since = self.unhealthy_since or now
            if now - self.unhealthy_since >= UNHEALTHY_FOR_S:
                errors = "; ".join(f"{p}: {h.last_error or 'failing'}" for p, h in healths.items())
                return f"every provider in use is unhealthy ({errors})"
        else:
            self.unhealthy_since = None
        return None


def fleet_bridge_connected(fleet: Fleet) -> bool:
    return read_bridge_status(fleet).get("connected") == "1"


class LocalRun:
    def __init__(self, options: RunOptions, environ: dict[str, str] | None = None) -> None:
        self.options = options
        self.environ = dict(os.environ if environ is None else environ)
        self.interrupted = asyncio.Event()
        self.crashed: list[str] = []
        self.spent_before = 0.0  # what the producer id had spent when the run started
        self.appended_before = 0  # the fleet's attributes_appended counter when the run started
        self.in_flight_at_count: int | None = None  # calls in flight when --count was reached

    def child_env(self, extra: dict[str, str], orchestrator_addr: str) -> dict[str, str]:
        env = {**self.environ, **extra, "ORCHESTRATOR_ADDR": orchestrator_addr, "PYTHONUNBUFFERED": "1"}
        count = self.options.job.count
        if count and "PRODUCER_MOCK_VOCABULARY" not in env:  # the mock must be able to reach --count
            env["PRODUCER_MOCK_VOCABULARY"] = str(max(5000, 3 * count))
        if self.options.concurrency:
            env["PRODUCER_CONCURRENCY"] = str(self.options.concurrency)
        return env

    def run(self) -> int:
        settings = load_settings(self.environ)
        providers = providers_in_use(settings, self.options.job.weights)
        weights = self.options.job.weights or {p: 1.0 for p in providers}
        if providers == ["mock"] and not self.options.job.weights:
            print(
                "producer: no OPENAI_API_KEY or ANTHROPIC_API_KEY set (nor another provider): "
                "using the built-in mock provider",
                file=sys.stderr,
            )
        else:
            print(f"producer: providers in use: {', '.join(providers)}", file=sys.stderr)
        log_dir = Path(tempfile.mkdtemp(prefix="producer-run-"))
        try:
            with redis_for_run(self.environ, settings.id) as redis_env:
                return asyncio.run(self._run(providers, weights, redis_env, log_dir))
        finally:
            shutil.rmtree(log_dir, ignore_errors=True)

    async def _run(
        self, providers: list[str], weights: dict[str, float], redis_env: dict[str, str], log_dir: Path
    ) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.interrupted.set)
        port = free_port()
        addr = self.options.orchestrator or f"127.0.0.1:{port}"
        env = self.child_env(redis_env, addr)
        settings = load_settings({k: v for k, v in env.items()})
        fleet = Fleet.from_settings(settings)
        before = {p: fleet.read_stats(p) for p in providers}  # a shared Redis may hold earlier runs
        self.spent_before = fleet.read_spend().usd
        self.appended_before = fleet.read_counters().get("attributes_appended", 0)
        if self.options.budget_usd is not None:  # the budget is fleet-wide: this run's share on top
            env["PRODUCER_BUDGET_USD"] = repr(self.spent_before + self.options.budget_usd)
        orchestrator = None
        if self.options.orchestrator is None:
            orchestrator = ReferenceOrchestrator(
                replace(self.options.job, weights=weights), on_progress=lambda p: self.on_progress(p, fleet)
            )
            self.renew_quota(fleet, orchestrator)  # before the topic starts: no call beyond it, ever
            orchestrator.go.clear()  # the topic starts once every worker registered: weights hold at once
            await orchestrator.serve("127.0.0.1", port)
        children = start_children(log_dir, env, providers, concurrency=max(4, settings.concurrency))
        started = time.monotonic()
        code = 0
        display = ProgressDisplay(sys.stderr)
        try:
            code = await self._watch(orchestrator, fleet, children, started, providers, display=display)
        finally:
            display.close()
            await self._finish(orchestrator, fleet, children, providers, before=before, log_dir=log_dir)
        return code

    def renew_quota(self, fleet: Fleet, orchestrator: ReferenceOrchestrator) -> None:
        """--count: no provider call starts that the count does not need: the fleet's target is
        the count, plus what the orchestrator found to be duplicates (they do not count there);
        a call in flight may bring up to a batch."""
        count = self.options.job.count
        if count is not None:
            target = self.appended_before + count + orchestrator.progress.duplicates
            fleet.set_quota(target, per_call=self.options.job.batch_size, ttl_ms=QUOTA_TTL_MS)

    def on_progress(self, progress: Progress, fleet: Fleet) -> None:
        """The orchestrator accepted a batch: at the count, note the calls still in flight."""
        count = self.options.job.count
        if count is not None and progress.unique >= count and self.in_flight_at_count is None:
            try:
                self.in_flight_at_count = fleet.running_lanes()
            except ProducerError as exc:
                log.warning("could not count the calls in flight: %s", exc)
                self.in_flight_at_count = -1

    async def _finish(
        self,
        orchestrator: ReferenceOrchestrator | None,
        fleet: Fleet,
        children: Children,
        providers: list[str],
        *,
        before: dict[str, ProviderStats],
        log_dir: Path,
    ) -> None:
        """Stop the topic and every process, then the summary (and the logs of a crash)."""
        if orchestrator is not None:
            await orchestrator.stop_all()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(orchestrator.finished.wait(), timeout=STOP_GRACE_S)
        await asyncio.to_thread(children.stop)
        if orchestrator is not None:
            await orchestrator.aclose()
        with contextlib.suppress(ProducerError):
            await asyncio.to_thread(fleet.clear_quota)
        print(file=sys.stderr)
        if orchestrator is not None:
            print(f"done: {orchestrator.progress.line()}", file=sys.stderr)
            if self.in_flight_at_count is not None and self.in_flight_at_count >= 0:
                print(
                    f"calls in flight when the count was reached: {self.in_flight_at_count} "
                    "(no new call started after it)",
                    file=sys.stderr,
                )
            print(
                where_attributes_went(self.options.job.output, orchestrator.progress.unique), file=sys.stderr
            )
        print(summary_table(fleet, providers, before, stream=sys.stderr), file=sys.stderr)
        cost = sum(fleet.read_stats(p).cost_usd - before[p].cost_usd for p in providers)
        if orchestrator is not None and cost > 0:
            per = orchestrator.progress.unique / cost
            print(f"cost: US${cost:.4f}, {per:,.0f} unique attributes per US$", file=sys.stderr)
        for name in self.crashed:
            text = (log_dir / f"{name}.log").read_text(errors="replace")[-1500:]
            print(f"--- {name} ---\n{text}", file=sys.stderr)
        fleet.close()

    async def _ended(
        self,
        orchestrator: ReferenceOrchestrator | None,
        fleet: Fleet,
        children: Children,
        deadline: float | None,
        say: Callable[[str], None],
    ) -> int | None:
        """The run's exit code once it has ended (done, --duration, interrupted, budget, a
        process died); None while it goes on."""
        if self.interrupted.is_set():
            say("interrupted: stopping")
            return 130
        if orchestrator is not None and orchestrator.done.is_set():
            return 0
        if deadline is not None and time.monotonic() > deadline:
            return 0
        if self.options.budget_usd is not None:
            spend = await asyncio.to_thread(fleet.read_spend)
            if spend.reached_ms is not None:
                spent = spend.usd - self.spent_before
                say(f"producer: budget reached: spent US${spent:.4f} of US${self.options.budget_usd:g}")
                return 0
        self.crashed = children.dead()
        if self.crashed:
            say(f"producer: {', '.join(self.crashed)} exited unexpectedly")
            return 1
        return None

    async def _watch(
        self,
        orchestrator: ReferenceOrchestrator | None,
        fleet: Fleet,
        children: Children,
        started: float,
        providers: list[str],
        *,
        display: ProgressDisplay,
    ) -> int:
        def say(message: str) -> None:  # below the live line, which stays as it was
            display.close()
            print(message, file=sys.stderr)

        last_print = 0.0
        deadline: float | None = None  # --duration counts from when every worker has registered
        ready = False
        ready_at = 0.0
        stall = Stall(self.options.orchestrator or "")
        while True:
            if not ready:
                ready = await asyncio.to_thread(lambda: all(fleet.serving_workers(p) for p in providers))
                ready_at = time.monotonic()
                if ready:  # beat (reconcile, health checks) starts now, not competing with the workers
                    children.start("beat", BEAT_COMMAND)
                if ready and orchestrator is not None:
                    orchestrator.go.set()
                if ready and self.options.job.duration_s:
                    deadline = time.monotonic() + self.options.job.duration_s
                elif not ready and time.monotonic() - started > WORKER_START_TIMEOUT_S:
                    say(f"producer: the workers did not register within {WORKER_START_TIMEOUT_S:.0f}s")
                    return 1
            code = await self._ended(orchestrator, fleet, children, deadline, say)
            if code is not None:
                return code
            if orchestrator is not None:
                await asyncio.to_thread(self.renew_quota, fleet, orchestrator)
            if ready:
                reason = await asyncio.to_thread(
                    stall.check, orchestrator, fleet, providers, time.monotonic() - ready_at
                )
                if reason is not None:
                    say(f"producer: no progress: {reason}")
                    return 1
            if orchestrator is not None and display.due():
                await asyncio.to_thread(
                    display.show, orchestrator.progress, fleet, self.options.job.count, started
                )
            elif orchestrator is None and time.monotonic() - last_print > 5:
                counters = await asyncio.to_thread(fleet.read_counters)
                print(f"{counters.get('attributes_appended', 0)} attributes generated", file=sys.stderr)
                last_print = time.monotonic()
            await asyncio.sleep(0.5 if ready else 0.1)  # the topic starts as soon as all registered


def output_to_stdout_unless_terminal(args: argparse.Namespace) -> None:
    """Without --output, attributes go to stdout as JSON lines when it is a pipe or a file."""
    if args.output is None and not sys.stdout.isatty():
        args.output = STDOUT


def where_attributes_went(output: Path | None, unique: int) -> str:
    if output is None:
        return f"the {unique} unique attributes were not kept: --output FILE (or a pipe) keeps them"
    if output == STDOUT:
        return f"{unique} unique attributes written to stdout as JSON lines"
    return f"{unique} unique attributes written to {output}"


def run_command(args: argparse.Namespace) -> int:
    """``producer run``: check the options, then run the whole system."""
    if args.orchestrator is None and not args.topic:
        print(
            "producer run: --topic is required (unless --orchestrator names one that sets it)",
            file=sys.stderr,
        )
        return 2
    if args.orchestrator is None and args.count is None and args.duration is None:
        print("producer run: give --count N or --duration S (or stop it with Ctrl-C)", file=sys.stderr)
    output_to_stdout_unless_terminal(args)
    options = RunOptions(
        job=job_options(args),
        concurrency=args.concurrency,
        budget_usd=args.budget_usd,
        orchestrator=f"{args.orchestrator[0]}:{args.orchestrator[1]}" if args.orchestrator else None,
    )
    environ = dict(os.environ)
    if args.providers_file is not None:
        environ["PRODUCER_PROVIDERS_FILE"] = str(args.providers_file)
    return LocalRun(options, environ).run()
