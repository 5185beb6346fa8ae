"""The live progress line and the closing summary of ``producer run``."""

from __future__ import annotations

import time
from typing import IO

from rich.console import Console
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from orchestrator_bridge.cli.status import strategy_line
from orchestrator_bridge.cli.tables import render_table
from orchestrator_bridge.orchestrator import Progress
from producer_tasks.records import ProviderStats
from producer_tasks.state import bloom, novelty
from producer_tasks.state.fleet import Fleet
from producer_tasks.state.status import strategy_yields

PLAIN_EVERY_S = 5.0  # a plain line this often when the output is not a terminal


class ProgressDisplay:
    """``producer run``'s progress on ``stream``: one live line (rich) on a terminal, as wide
    as the terminal is, with a bar when the run has a target; a plain line every few seconds
    otherwise (a log file gets lines, not carriage returns)."""

    def __init__(self, stream: IO[str]) -> None:
        self.terminal = stream.isatty()
        self.console = Console(file=stream, highlight=False)
        self.live: Live | None = None
        self.last = 0.0

    def due(self) -> bool:
        return self.terminal or time.monotonic() - self.last > PLAIN_EVERY_S

    def show(self, progress: Progress, fleet: Fleet, target: int | None, started: float) -> None:
        self.last = time.monotonic()
        if not self.terminal:
            print(progress_line(progress, fleet, target, started), file=self.console.file, flush=True)
            return
        row = Table.grid(padding=(0, 1))
        cells: list[ProgressBar | Text] = []
        if target:
            row.add_column(width=20)
            cells.append(ProgressBar(total=target, completed=min(progress.unique, target), width=20))
        row.add_column(no_wrap=True, overflow="ellipsis")
        cells.append(Text(progress_line(progress, fleet, target, started, bar=False)))
        row.add_row(*cells)
        if self.live is None:
            self.live = Live(row, console=self.console, auto_refresh=False, transient=False)
            self.live.start()
        self.live.update(row, refresh=True)

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None


def progress_line(
    progress: Progress, fleet: Fleet, target: int | None, started: float, *, bar: bool = True
) -> str:
    elapsed = time.monotonic() - started
    counts = bloom.read_counts(fleet)
    filtered = counts.filtered_candidates if counts else 0
    done = f"{progress.unique}/{target}" if target else f"{progress.unique}"
    text_bar = ""
    if target and bar:
        filled = min(20, int(20 * progress.unique / target))
        text_bar = "[" + "#" * filled + "." * (20 - filled) + "] "
    shares = progress.shares(" ")
    return (
        f"{text_bar}{done} unique  {progress.unique / max(elapsed, 1e-9):.1f}/s  "
        f"filtered {filtered}  repeats {progress.duplicates}  {shares}  {elapsed:.0f}s"
    )


def summary_table(
    fleet: Fleet, providers: list[str], before: dict[str, ProviderStats], *, stream: IO[str]
) -> str:
    """Per provider, what this run did (statistics now minus at the start), then a line each:
    the prompt strategy winning on it and what each strategy brought (the table stays within
    80 columns)."""
    rows: list[tuple[str, ...]] = []
    record = novelty.read_strategies(fleet)
    lines = []
    for provider in providers:
        winning, yields = strategy_yields(record, provider)
        if yields:
            lines.append(strategy_line(provider, winning, yields))
        now, then = fleet.read_stats(provider), before.get(provider, ProviderStats())
        successes = now.successful_requests - then.successful_requests
        latency = (now.total_response_ms - then.total_response_ms) / successes if successes else 0.0
        rows.append(
            (
                provider,
                str(now.total_requests - then.total_requests),
                str(now.failed_requests - then.failed_requests),
                str(now.tokens_used - then.tokens_used),
                f"${now.cost_usd - then.cost_usd:.4f}",
                str(now.unique_contributions - then.unique_contributions),
                f"{latency:.0f} ms",
            )
        )
    header = ("provider", "requests", "failures", "tokens", "cost", "unique", "mean latency")
    return "\n".join([render_table(header, rows, stream=stream), *lines])
