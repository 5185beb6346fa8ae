"""Fleet state in Redis: the connection, the Lua scripts and a consistent snapshot.

``Fleet`` is the one place that talks to Redis for the producer; the concepts built on it
(control API, lanes, health storage, stream, rate limits, bloom filter) each have their
own module. Redis errors are translated into ``StateError`` here.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, ParamSpec, TypeVar

import redis

from orchestrator_bridge.messages import ProviderStatus
from producer_tasks.errors import StateError
from producer_tasks.keys import Keys
from producer_tasks.records import HealthRecord, LaneRecord, Phase, ProviderStats, TopicState
from producer_tasks.settings import PROVIDERS, Settings

P = ParamSpec("P")
R = TypeVar("R")
SCRIPT_NAMES = ("assign", "transition", "deliver", "outcome", "ratelimit")


@dataclass(frozen=True, slots=True)
class ScriptCall:
    """One Lua script invocation, to be run alone or pipelined with others."""

    name: str
    keys: list[str]
    args: list[Any]


@dataclass(frozen=True, slots=True)
class CommandCall:
    """One plain Redis command, to be pipelined with script calls."""

    args: tuple[Any, ...]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@contextmanager
def redis_errors(what: str) -> Iterator[None]:
    """Translate redis-py errors into StateError at the boundary."""
    try:
        yield
    except redis.RedisError as exc:
        raise StateError(f"redis: {what} failed: {exc}") from exc


def translated(what: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            with redis_errors(what):
                return func(*args, **kwargs)

        return wrapper

    return decorate


def _load_script(name: str) -> str:
    """A script from ``lua/``, with the shared helpers of ``lua/common.lua`` in front."""
    folder = resources.files("producer_tasks").joinpath("lua")
    return folder.joinpath("common.lua").read_text() + "\n" + folder.joinpath(f"{name}.lua").read_text()


@dataclass(frozen=True)
class FleetView:
    """One consistent read of what selection and reconcile need."""

    state: TopicState
    lanes: dict[int, LaneRecord]
    health: dict[str, HealthRecord]
    live_queues: frozenset[str]
    backlog: int
    now_ms: int
    stats: dict[str, ProviderStats] = field(default_factory=dict)

    @property
    def running(self) -> bool:
        return self.state.phase is Phase.RUNNING


def parse_state(data: str | None, phase: str | None, epoch: str | None) -> TopicState:
    """The state hash's fields: the JSON record, with phase and epoch kept beside it (the
    Lua scripts read and change those two)."""
    if not data:
        return TopicState()
    state = TopicState.model_validate_json(data)
    return state.model_copy(update={"phase": Phase(phase or state.phase), "epoch": int(epoch or state.epoch)})


def parse_health(raw: dict[str, str]) -> HealthRecord:
    if not raw:
        return HealthRecord()
    return HealthRecord(
        consecutive_failures=int(raw.get("consecutive_failures", 0)),
        last_success_ms=int(raw["last_success_ms"]) if raw.get("last_success_ms") else None,
        last_failure_ms=int(raw["last_failure_ms"]) if raw.get("last_failure_ms") else None,
        successes=int(raw.get("successes", 0)),
        total_response_ms=float(raw.get("total_response_ms", 0.0)),
        status=ProviderStatus(raw.get("status", ProviderStatus.UNKNOWN.value)),
        cooldown_until_ms=int(float(raw.get("cooldown_until_ms", 0))),
        last_error=raw.get("last_error", ""),
    )


def parse_stats(raw: dict[str, str]) -> ProviderStats:
    fields = ProviderStats.model_fields
    values: dict[str, Any] = {}
    for name, value in raw.items():
        if name in fields:
            is_float = name in ("total_response_ms", "ema_success", "ema_novelty")
            values[name] = float(value) if is_float else int(float(value))
    return ProviderStats(**values)


class Fleet:
    """Redis access for one producer id."""

    def __init__(self, client: redis.Redis, producer_id: str, *, lease_ms: int = 5000) -> None:
        # decode_responses=True: every reply is text (the bloom bits are only touched by Lua)
        self.redis: Any = client
        self.keys = Keys(producer_id)
        self.producer_id = producer_id
        self.lease_ms = lease_ms
        self.scripts = {name: client.register_script(_load_script(name)) for name in SCRIPT_NAMES}

    def close(self) -> None:
        """Close the Redis connections."""
        self.redis.close()

    @classmethod
    def from_settings(cls, settings: Settings) -> Fleet:
        client = redis.Redis.from_url(
            settings.redis_url,
            decode_responses=True,
            socket_timeout=10,
            socket_connect_timeout=5,
            health_check_interval=30,
            retry_on_timeout=True,
        )
        return cls(client, settings.id, lease_ms=int(settings.lane_lease_s * 1000))

    def script(self, name: str, keys: list[str], args: list[Any]) -> Any:
        with redis_errors(f"script {name}"):
            return self.scripts[name](keys=keys, args=args)

    def run(self, *calls: ScriptCall | CommandCall) -> list[Any]:
        """Several scripts and commands in one round trip (each atomic on its own)."""
        with redis_errors("pipelined writes"):
            pipe = self.redis.pipeline(transaction=False)
            for call in calls:
                if isinstance(call, ScriptCall):
                    self.scripts[call.name](keys=call.keys, args=call.args, client=pipe)
                else:
                    pipe.execute_command(*call.args)
            return list(pipe.execute())

    # --- reads ------------------------------------------------------------------------
    @translated("read state")
    def read_state(self) -> TopicState:
        return parse_state(*self.redis.hmget(self.keys.state, ["data", "phase", "epoch"]))

    @translated("read fleet view")
    def view(self, *, lane: int | None = None, with_stats: bool = False) -> FleetView:
        """State, lanes (all, or just ``lane``), health, live queues and backlog in one round trip."""
        now = now_ms()
        pipe = self.redis.pipeline(transaction=False)
        pipe.hmget(self.keys.state, ["data", "phase", "epoch"])
        if lane is None:
            pipe.hgetall(self.keys.lanes)
        else:
            pipe.hget(self.keys.lanes, str(lane))
        for provider in PROVIDERS:
            pipe.hgetall(self.keys.health(provider))
        for provider in PROVIDERS:
            pipe.zcount(self.keys.queue_workers(provider), now - self.lease_ms, "+inf")
        pipe.xlen(self.keys.batches)
        if with_stats:
            for provider in PROVIDERS:
                pipe.hgetall(self.keys.stats(provider))
        results = pipe.execute()
        data, phase, epoch = results[0]
        if lane is None:
            lanes = {int(k): LaneRecord.model_validate_json(v) for k, v in results[1].items()}
        else:
            lanes = {lane: LaneRecord.model_validate_json(results[1])} if results[1] else {}
        n = len(PROVIDERS)
        health = {p: parse_health(results[2 + i]) for i, p in enumerate(PROVIDERS)}
        live = frozenset(p for i, p in enumerate(PROVIDERS) if results[2 + n + i] > 0)
        backlog = int(results[2 + 2 * n])
        stats = (
            {p: parse_stats(results[3 + 2 * n + i]) for i, p in enumerate(PROVIDERS)} if with_stats else {}
        )
        return FleetView(
            state=parse_state(data, phase, epoch),
            lanes=lanes,
            health=health,
            live_queues=live,
            backlog=backlog,
            now_ms=now,
            stats=stats,
        )

    @translated("read health")
    def read_health(self, provider: str) -> HealthRecord:
        return parse_health(self.redis.hgetall(self.keys.health(provider)))

    @translated("read health")
    def read_healths(self, providers: list[str]) -> dict[str, HealthRecord]:
        """Several providers' health in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for provider in providers:
            pipe.hgetall(self.keys.health(provider))
        return {p: parse_health(raw) for p, raw in zip(providers, pipe.execute(), strict=True)}

    @translated("read stats")
    def read_stats(self, provider: str) -> ProviderStats:
        return parse_stats(self.redis.hgetall(self.keys.stats(provider)))

    @translated("read history")
    def read_history(self, limit: int = 100) -> list[dict[str, Any]]:
        return [json.loads(item) for item in self.redis.lrange(self.keys.history, 0, limit - 1)]

    @translated("read counters")
    def read_counters(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.redis.hgetall(self.keys.counters).items()}

    @translated("read backlog")
    def backlog(self) -> int:
        return int(self.redis.xlen(self.keys.batches))

    # --- workers ----------------------------------------------------------------------
    @translated("register worker")
    def heartbeat(self, worker: str, queues: list[str]) -> None:
        now = now_ms()
        pipe = self.redis.pipeline(transaction=False)
        pipe.zadd(self.keys.workers, {worker: now})
        for queue in queues:
            pipe.zadd(self.keys.queue_workers(queue), {worker: now})
        stale = now - 10 * self.lease_ms
        pipe.zremrangebyscore(self.keys.workers, "-inf", stale)
        for provider in PROVIDERS:
            pipe.zremrangebyscore(self.keys.queue_workers(provider), "-inf", stale)
        pipe.execute()

    @translated("unregister worker")
    def unregister(self, worker: str) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.zrem(self.keys.workers, worker)
        for provider in PROVIDERS:
            pipe.zrem(self.keys.queue_workers(provider), worker)
        pipe.execute()

    @translated("read live workers")
    def live_workers(self) -> set[str]:
        members = self.redis.zrangebyscore(self.keys.workers, now_ms() - self.lease_ms, "+inf")
        return set(members)

    def try_lock(self, key: str, ttl_ms: int, owner: str) -> bool:
        with redis_errors("lock"):
            return bool(self.redis.set(key, owner, nx=True, px=ttl_ms))
