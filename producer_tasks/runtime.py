"""What a worker process needs to run cycles: settings, Redis, SDK clients, lanes.

Created once per process (``producer_tasks.worker.current``) or by a test; holds no
fleet state of its own (that is all in Redis).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from producer_tasks.generation import strategy
from producer_tasks.generation.providers import Clients
from producer_tasks.lanes import Dispatcher, Lanes
from producer_tasks.settings import Settings
from producer_tasks.state.fleet import Fleet
from producer_tasks.state.outcomes import HistorySampler


@dataclass
class Runtime:
    settings: Settings
    fleet: Fleet
    clients: Clients
    lanes: Lanes
    history: HistorySampler  # which successful attempts this process records
    strategies: tuple[strategy.Strategy, ...]  # the prompt strategies its cycles may use
    lists_known: bool  # one of them writes avoid lists: the known items are recorded

    @classmethod
    def create(
        cls,
        settings: Settings,
        dispatcher: Dispatcher,
        *,
        fleet: Fleet | None = None,
        rng: random.Random | None = None,
    ) -> Runtime:
        fleet = fleet or Fleet.from_settings(settings)
        return cls(
            settings=settings,
            fleet=fleet,
            clients=Clients(settings),
            lanes=Lanes(fleet, dispatcher, settings, rng=rng),
            history=HistorySampler(settings.history_sample_s),
            strategies=strategy.available(settings),
            lists_known=strategy.widest(settings).avoid_tokens > 0,
        )

    @property
    def rng(self) -> random.Random:
        return self.lanes.rng

    @property
    def adaptive(self) -> bool:
        return self.lanes.adaptive
