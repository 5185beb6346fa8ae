"""``producer status``: the fleet as Redis sees it, as text or JSON (``--watch`` refreshes)."""

from __future__ import annotations

import argparse
import sys
import time

from rich.console import Console
from rich.live import Live
from rich.text import Text

from orchestrator_bridge.cli.tables import render_table
from producer_tasks.settings import get_settings
from producer_tasks.state.fleet import Fleet
from producer_tasks.state.status import FleetStatus, snapshot

WATCH_INTERVAL_S = 2.0


def run_status(args: argparse.Namespace) -> int:
    fleet = Fleet.from_settings(get_settings())
    try:
        if args.watch and not args.json and sys.stdout.isatty():
            return watch(fleet)
        while True:
            status = snapshot(fleet)
            print(status.model_dump_json(indent=2) if args.json else render(status), flush=True)
            if not args.watch:
                return 0
            time.sleep(WATCH_INTERVAL_S)  # not a terminal: one snapshot after another
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
        + (f"; last error: {b['last_error']}" if b.get("last_error") else "")
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
    for name, p in status.providers.items():
        if p.last_error:
            lines.append(f"{name}: last error: {p.last_error}")
    return "\n".join(lines)
