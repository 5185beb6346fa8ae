"""The bridge's ``/healthz`` and ``/readyz`` (on its metrics port): what a Kubernetes probe asks.

- alive: the bridge's event loop still runs (it marks a tick every second; a loop stuck for
  ``LOOP_STALL_S`` is a process to restart). Redis or the orchestrator being away is not.
- ready: connected to the orchestrator, and Redis answers a read now. A bridge that is not
  ready keeps trying by itself; the probe only tells the operator (and a rollout) so.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

from orchestrator_bridge.connection import BridgeCounters
from orchestrator_bridge.metrics import Probes
from producer_tasks.errors import ProducerError
from producer_tasks.state.fleet import Fleet

LOOP_STALL_S = 30.0
TICK_S = 1.0


@dataclass
class BridgeProbes:
    fleet: Fleet
    counters: BridgeCounters
    orchestrator_addr: str
    ticked_at: float = field(default_factory=time.monotonic)

    async def tick_forever(self, stopping: asyncio.Event) -> None:
        """Mark that the loop runs, every ``TICK_S``, until stopping."""
        while not stopping.is_set():
            self.ticked_at = time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=TICK_S)

    def alive(self) -> str | None:
        stalled = time.monotonic() - self.ticked_at
        if stalled > LOOP_STALL_S:
            return f"not alive: the bridge's event loop has not run for {stalled:.0f}s"
        return None

    def ready(self) -> str | None:
        if not self.counters.connected:
            error = self.counters.last_error[:200]
            return f"not ready: not connected to the orchestrator at {self.orchestrator_addr}" + (
                f" ({error})" if error else ""
            )
        try:
            self.fleet.read_phase()
        except ProducerError as exc:
            return f"not ready: Redis does not answer ({str(exc)[:200]})"
        return None

    def probes(self) -> Probes:
        return Probes(alive=self.alive, ready=self.ready)
