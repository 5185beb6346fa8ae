"""``producer status``: the fleet as Redis sees it, as text or JSON (``--watch`` refreshes)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Mapping

from rich.console import Console
from rich.live import Live
from rich.text import Text

from orchestrator_bridge.cli import runfile
from orchestrator_bridge.cli.tables import render_table
from producer_tasks.addresses import mask_url
from producer_tasks.errors import ConfigurationError, StateError
from producer_tasks.printable import printable
from producer_tasks.settings import Settings, get_settings, load_settings
from producer_tasks.state.fleet import Fleet
from producer_tasks.state.status import FleetStatus, StrategyYield, snapshot

WATCH_INTERVAL_S = 2.0


def status_settings(environ: Mapping[str, str]) -> tuple[Settings, str]:
    """The settings to read the fleet with, and where its Redis came from (said on failure):
    REDIS_URL when set, else the producer run on this machine (its runtime file), else the
    default URL."""
    settings = get_settings()
    if environ.get("REDIS_URL") or settings.sentinels:
        return settings, "REDIS_URL"
    runs = runfile.running()
    mine = [run for run in runs if run.producer_id == settings.id] or runs
    if len(mine) > 1:
        ids = ", ".join(sorted(run.producer_id for run in mine))
        raise ConfigurationError(f"several producer runs on this machine ({ids}): set PRODUCER_ID to one")
    if mine:
        (run,) = mine
        found = load_settings({**environ, "REDIS_URL": run.redis_url, "PRODUCER_ID": run.producer_id})
        return found, f"the producer run on this machine (pid {run.pid})"
    return settings, "REDIS_URL is not set and no producer run is running on this machine"


def run_status(args: argparse.Namespace) -> int:
    settings, source = status_settings(os.environ)
    if source.startswith("the producer run"):
        print(f"producer status: reading {source}", file=sys.stderr)
    fleet = Fleet.from_settings(settings)
    try:
        if args.watch and not args.json and sys.stdout.isatty():
            return watch(fleet)
        while True:
            status = snapshot(fleet)
            print(status.model_dump_json(indent=2) if args.json else render(status), flush=True)
            if not args.watch:
                return 0
            time.sleep(WATCH_INTERVAL_S)  # not a terminal: one snapshot after another
    except StateError as exc:
        why = exc.__cause__ or exc  # the connection's own words, not our wrapper's
        where = f"producer {settings.id!r} at {mask_url(settings.redis_url)} ({source})"
        print(f"producer status: cannot read {where}: {why}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        fleet.close()


def watch(fleet: Fleet) -> int:
    """On a terminal: one status, redrawn in place every few seconds (rich), until Ctrl-C."""
    console = Console()
    with Live(console=console, auto_refresh=False, vertical_overflow="crop") as live:
        while True:
            text = render(snapshot(fleet))
            stamp = time.strftime("%H:%M:%S")
            live.update(
                Text.from_ansi(f"{text}\n\n{stamp}, every {WATCH_INTERVAL_S:g} s; Ctrl-C to stop"),
                refresh=True,
            )
            time.sleep(WATCH_INTERVAL_S)


def spending(status: FleetStatus) -> str:
    text = f"spent US${status.spent_usd:.4f}"
    if status.budget_usd is not None:
        text += f" of a US${status.budget_usd:g} budget" + (
            " (reached: stopped)" if status.budget_reached else ""
        )
    if status.unique_per_usd is not None:
        text += f"; {status.unique_per_usd:g} unique attributes per US$"
    return text


def bridge_line(b: dict[str, str]) -> str:
    state = "connected" if b.get("connected") == "1" else "disconnected"
    restores = b.get("state_restores", "0")
    return (
        f"bridge: {state} to {b.get('orchestrator', '?')}; {b.get('batches_forwarded', 0)} batches "
        f"forwarded ({b.get('batches_resent', 0)} re-sent after reconnects), "
        f"{b.get('bad_frames', 0)} bad frames"
        + (f", fleet state re-applied {restores}x after Redis lost it" if restores != "0" else "")
        + (f"; last error: {printable(b['last_error'])}" if b.get("last_error") else "")
    )


PROVIDER_COLUMNS = (
    "provider",
    "status",
    "weight",
    "workers",
    "requests",
    "failures",
    "tokens",
    "cost",
    "unique",
    "latency",
    "novelty",
)


def provider_rows(status: FleetStatus) -> list[tuple[str, ...]]:
    return [
        (
            name,
            p.status + (f" (cooling {p.cooldown_s:.0f}s)" if p.cooldown_s else ""),
            f"{p.weight:g}",
            str(p.served_by_workers),
            str(p.requests),
            str(p.failures),
            str(p.tokens),
            f"${p.cost_usd:.4f}",
            str(p.unique_contributions),
            f"{p.mean_latency_ms:.0f} ms",
            f"{p.novelty:.2f}",
        )
        for name, p in status.providers.items()
    ]


def render(status: FleetStatus) -> str:
    lines = [
        f"producer {status.producer_id}: {status.phase}"
        + (f", topic {status.topic!r} (epoch {status.epoch})" if status.topic else ", no topic yet"),
        f"cycles in flight {status.cycles_in_flight} of {status.concurrency}; lanes "
        + (", ".join(f"{k} {v}" for k, v in sorted(status.lanes.items())) or "none"),
        f"backlog {status.backlog} of {status.max_backlog}; batches appended "
        f"{status.counters.get('batches_appended', 0)}, "
        f"attributes {status.counters.get('attributes_appended', 0)}",
        f"workers ({len(status.workers)}): {', '.join(status.workers) or 'none alive'}",
    ]
    lines.append(spending(status))
    lines += [f"waiting: {reason}" for reason in status.waiting_reasons]
    if status.bridge:
        lines.append(bridge_line(status.bridge))
    if status.bloom:
        f = status.bloom
        lines.append(
            f"bloom filter: {f['num_bits']} bits, k={f['num_hashes']}; {f['filtered_candidates']} of "
            f"{f['total_candidates']} candidates filtered"
        )
    lines.append("")
    lines.append(render_table(PROVIDER_COLUMNS, provider_rows(status), stream=sys.stdout))
    lines += strategy_lines(status)
    for name, p in status.providers.items():
        if p.last_error:
            lines.append(f"{name}: last error: {p.last_error}")
    return "\n".join(lines)


def strategy_lines(status: FleetStatus) -> list[str]:
    """Per provider, the prompt strategy winning and each one's yield, best first."""
    return [
        strategy_line(name, p.strategy, p.strategies) for name, p in status.providers.items() if p.strategies
    ]


def strategy_line(provider: str, winning: str, yields: dict[str, StrategyYield]) -> str:
    ranked = sorted(yields.items(), key=lambda item: -item[1].relative)
    shown = ", ".join(
        f"{s} {y.per_1000_tokens:.1f} ({y.tried} cycle{'' if y.tried == 1 else 's'})" for s, y in ranked
    )
    return f"{provider}: prompt strategy {winning} winning; new attributes per 1,000 tokens: {shown}"
