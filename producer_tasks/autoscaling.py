"""What an autoscaler should give each provider: worker slots wanted against slots served.

The fleet keeps exactly ``concurrency`` cycles in flight with prefetch one, so a queue's
length says nothing about load (it is ~0 while every worker is busy). Demand comes from the
topic instead: while the fleet runs, provider ``p`` should be able to run its weighted share
of the lanes, ``ceil(concurrency * w_p / sum(w))`` slots, whether or not any worker serves it
yet (so a provider scaled to zero grows back). An Unhealthy provider keeps one slot (a worker
must serve its queue for the health check that brings it back). A fleet that is not running,
or whose backlog is full (generation paused: more workers would not help), wants nothing.

KEDA's ``metrics-api`` scaler reads ``demand_slots`` from the bridge's ``/autoscaling``
endpoint (Prometheus: ``producer_provider_demand_slots``) with the worker's ``-c`` as its
target: replicas = ceil(demand / slots per worker).
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict

from producer_tasks.records import LaneStatus, ProviderStatus
from producer_tasks.selection import effective_weight
from producer_tasks.state.fleet import FleetView


class ProviderDemand(BaseModel):
    """One provider's capacity: wanted, served, and lanes waiting for a slot."""

    model_config = ConfigDict(frozen=True)

    demand_slots: int  # worker slots the fleet wants for this provider now
    slots: int  # slots of live workers consuming its queue
    lanes_waiting_for_slot: int  # dispatched to its queue, not yet taken by a worker


def desired_replicas(demand: ProviderDemand, slots_per_worker: int) -> int:
    """What KEDA's ``metrics-api`` scaler (target type AverageValue) makes of ``demand_slots``
    with ``targetValue`` = the worker's ``-c``: ``ceil(demand / slots per worker)``."""
    return math.ceil(demand.demand_slots / slots_per_worker)


def demand(view: FleetView, slots: dict[str, int]) -> dict[str, ProviderDemand]:
    """Per provider of the fleet (``view.health``'s keys), from one snapshot."""
    state = view.state
    paused = not view.running or view.backlog >= state.max_backlog
    weights = {p: effective_weight(state.weights.get(p)) for p in view.health}
    usable = {
        p: w for p, w in weights.items() if w > 0 and view.health[p].status is not ProviderStatus.UNHEALTHY
    }
    total = sum(usable.values())
    result: dict[str, ProviderDemand] = {}
    for p in view.health:
        if paused or weights[p] <= 0:
            wanted = 0
        elif p in usable:
            wanted = math.ceil(state.concurrency * usable[p] / total)
        else:
            wanted = 1  # Unhealthy: one worker for the health check that brings it back
        result[p] = ProviderDemand(
            demand_slots=wanted,
            slots=slots.get(p, 0),
            lanes_waiting_for_slot=sum(
                1 for lane in view.lanes.values() if lane.provider == p and lane.status is LaneStatus.QUEUED
            ),
        )
    return result
