"""The live progress line and the closing summary of ``producer run``."""

from __future__ import annotations

import time
from typing import IO

from orchestrator_bridge.cli.tables import render_table
from orchestrator_bridge.orchestrator import Progress
from producer_tasks.records import ProviderStats
from producer_tasks.state import bloom
from producer_tasks.state.fleet import Fleet


def progress_line(progress: Progress, fleet: Fleet, target: int | None, started: float) -> str:
    elapsed = time.monotonic() - started
    counts = bloom.read_counts(fleet)
    filtered = counts.filtered_candidates if counts else 0
    done = f"{progress.unique}/{target}" if target else f"{progress.unique}"
    bar = ""
    if target:
        filled = min(20, int(20 * progress.unique / target))
        bar = "[" + "#" * filled + "." * (20 - filled) + "] "
    shares = progress.shares(" ")
    return (
        f"{bar}{done} unique  {progress.unique / max(elapsed, 1e-9):.1f}/s  "
        f"filtered {filtered}  repeats {progress.duplicates}  {shares}  {elapsed:.0f}s"
    )


def summary_table(
    fleet: Fleet, providers: list[str], before: dict[str, ProviderStats], *, stream: IO[str]
) -> str:
    """Per provider, what this run did (statistics now minus at the start)."""
    rows: list[tuple[str, ...]] = []
    for provider in providers:
        now, then = fleet.read_stats(provider), before.get(provider, ProviderStats())
        successes = now.successful_requests - then.successful_requests
        latency = (now.total_response_ms - then.total_response_ms) / successes if successes else 0.0
        rows.append(
            (
                provider,
                str(now.total_requests - then.total_requests),
                str(now.failed_requests - then.failed_requests),
                str(now.tokens_used - then.tokens_used),
                str(now.unique_contributions - then.unique_contributions),
                f"{latency:.0f} ms",
            )
        )
    header = ("provider", "requests", "failures", "tokens", "unique", "mean latency")
    return render_table(header, rows, stream=stream)
