"""The state layer's entry point: one producer id's Redis, its scripts, and consistent reads.

``Fleet`` holds the connection and the Lua scripts (``scripts.py``), runs script and command
calls in one round trip, and reads what selection, reconcile and status need in one snapshot
(``FleetView``). The concepts built on it have their own modules in this package; nothing
outside it talks to Redis. Redis errors become ``StateError``."""

from __future__ import annotations

import functools
import json
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NotRequired, TypedDict

import redis
from redis.exceptions import NoScriptError
from typing_extensions import Unpack

from producer_tasks.clock import now_ms
from producer_tasks.records import (
    HealthRecord,
    LaneRecord,
    LaneStatus,
    Phase,
    ProviderStats,
    TopicState,
)
from producer_tasks.settings import PROVIDERS, Settings
from producer_tasks.state import roundtrip, scripts
from producer_tasks.state.client import connect, redis_errors, translated
from producer_tasks.state.decode import Spend, parse_health, parse_spend, parse_state, parse_stats, phase_of
from producer_tasks.state.keys import Keys
from producer_tasks.state.scripts import CommandCall, QueuedMessage, ScriptCall


def new_token() -> str:
    """A lane's dispatch token (the cycle message's task id): never repeats. A version-4 UUID
    from ``random`` (seeded from the OS, and again in a forked child): ``uuid4`` reads
    ``os.urandom``, a system call that lets go of the GIL, once per cycle; a token must be
    unique, not secret."""
    return uuid.UUID(int=random.getrandbits(128), version=4).hex


@dataclass(frozen=True)
class FleetView:
    """One consistent read of what selection and reconcile need."""

    state: TopicState
    lanes: dict[int, LaneRecord]
    health: dict[str, HealthRecord]
    serving: dict[str, int]  # provider -> workers with a fresh heartbeat consuming its queue
    backlog: int
    now_ms: int
    stats: dict[str, ProviderStats] = field(default_factory=dict)
    extra: list[Any] = field(default_factory=list)  # replies to the caller's ``extra`` commands

    @functools.cached_property
    def live_queues(self) -> frozenset[str]:
        return frozenset(p for p, workers in self.serving.items() if workers > 0)

    @property
    def running(self) -> bool:
        return self.state.phase is Phase.RUNNING


class LaneChange(TypedDict):
    """A lane's transition (``Fleet.transition``): failures -1 keeps the count, epoch None
    checks none, budget_usd applies to running, provider's health is checked for running."""

    lane: int
    token: str
    status: LaneStatus
    worker: NotRequired[str]
    until_ms: NotRequired[int]
    reason: NotRequired[str]
    failures: NotRequired[int]
    epoch: NotRequired[int | None]
    budget_usd: NotRequired[float | None]
    provider: NotRequired[str]


class Fleet:
    """Redis access for one producer id."""

    def __init__(
        self,
        client: redis.Redis,
        producer_id: str,
        *,
        lease_ms: int = 5000,
        providers: tuple[str, ...] = PROVIDERS,
        budget_usd: float | None = None,
    ) -> None:
        # decode_responses=True: every reply is text (the bloom bits are only touched by commands)
        self.redis: Any = client
        self.providers = providers  # the fleet's named providers (Settings.provider_names)
        self.budget_usd = budget_usd  # PRODUCER_BUDGET_USD, for status
        self.keys = Keys(producer_id)
        self.producer_id = producer_id
        self.lease_ms = lease_ms
        self.scripts = {name: client.register_script(text) for name, text in scripts.script_files().items()}

    @classmethod
    def from_settings(cls, settings: Settings) -> Fleet:
        return cls(
            connect(settings),
            settings.id,
            lease_ms=int(settings.lane_lease_s * 1000),
            providers=settings.provider_names,
            budget_usd=settings.budget_usd,
        )

    def close(self) -> None:
        """Close the Redis connections."""
        self.redis.close()

    def call(self, script: scripts.Script) -> Any:
        """Run one script alone."""
        (result,) = self.run(script.call())
        return result

    def run(self, *calls: ScriptCall | CommandCall) -> list[Any]:
        """Scripts and commands in one round trip, each atomic; scripts by EVALSHA alone (no SCRIPT
        EXISTS trip); those a server lost (restart, failover) are loaded and run again, last."""
        with redis_errors("round trip"):
            results = self._pipelined(calls, load=False)
            unknown = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
            if unknown:
                again = self._pipelined([calls[i] for i in unknown], load=True)
                for i, result in zip(unknown, again, strict=True):
                    results[i] = result
            for result in results:
                if isinstance(result, Exception):
                    raise result
            return results

    def _pipelined(self, calls: Sequence[ScriptCall | CommandCall], *, load: bool) -> list[Any]:
        if load:  # rare: redis-py's registered scripts load what the server is missing
            pipe = self.redis.pipeline(transaction=False)
            for call in calls:
                self.queue(pipe, call, load=True)
            return list(pipe.execute(raise_on_error=False))
        return roundtrip.execute(self.redis, [self._command(call) for call in calls])

    def _command(self, call: ScriptCall | CommandCall) -> roundtrip.Command:
        if isinstance(call, CommandCall):
            return call.args
        return ("EVALSHA", self.scripts[call.name].sha, len(call.keys), *call.keys, *call.args)

    def queue(self, pipe: Any, call: ScriptCall | CommandCall, *, load: bool = False) -> None:
        """Add ``call`` to a pipeline: a script by EVALSHA alone (its reply a ``NoScriptError``
        when the server lost it; ``run`` then loads it), or registered (``load``: loaded first
        if missing)."""
        if isinstance(call, CommandCall):
            pipe.execute_command(*call.args)
        elif load:
            self.scripts[call.name](keys=call.keys, args=call.args, client=pipe)
        else:
            pipe.evalsha(self.scripts[call.name].sha, len(call.keys), *call.keys, *call.args)

    # --- reads ------------------------------------------------------------------------
    @translated("read state")
    def read_state(self) -> TopicState:
        return parse_state(*self.redis.hmget(self.keys.state, ["data", "phase", "epoch"]))

    def read_phase(self) -> Phase:
        """``read_state().phase`` without reading and parsing the topic (the bridge polls it)."""
        phase, data_length = self.run(
            CommandCall(("HGET", self.keys.state, "phase")), CommandCall(("HSTRLEN", self.keys.state, "data"))
        )
        known = phase_of(phase, data_length)
        return self.read_state().phase if known is None else known

    def view(
        self,
        *,
        lane: int | None = None,
        with_stats: bool = False,
        extra: Sequence[ScriptCall | CommandCall] = (),
    ) -> FleetView:
        """State, lanes (all or ``lane``), health, live queues, backlog in one trip; ``extra``
        (scripts or commands, e.g. a cycle's claim) runs first, its replies in ``extra``."""
        now = now_ms()
        keys = self.keys
        reads = [CommandCall(("HMGET", keys.state, "data", "phase", "epoch"))]
        reads.append(CommandCall(("HGETALL", keys.lanes) if lane is None else ("HGET", keys.lanes, lane)))
        reads += [CommandCall(("HGETALL", keys.health(p))) for p in self.providers]
        live = now - self.lease_ms
        reads += [CommandCall(("ZCOUNT", keys.queue_workers(p), live, "+inf")) for p in self.providers]
        reads.append(CommandCall(("XLEN", keys.batches)))
        if with_stats:
            reads += [CommandCall(("HGETALL", keys.stats(p))) for p in self.providers]
        replies = self.run(*extra, *reads)
        results = replies[len(extra) :]
        if lane is None:
            lanes = {int(k): LaneRecord.model_validate_json(v) for k, v in results[1].items()}
        else:
            lanes = {lane: LaneRecord.model_validate_json(results[1])} if results[1] else {}
        n = len(self.providers)
        health = {p: parse_health(results[2 + i]) for i, p in enumerate(self.providers)}
        serving = {p: int(results[2 + n + i]) for i, p in enumerate(self.providers)}
        stats = [parse_stats(raw) for raw in results[3 + 2 * n :]]  # with_stats: one per provider
        return FleetView(
            state=parse_state(*results[0]),
            lanes=lanes,
            health=health,
            serving=serving,
            backlog=int(results[2 + 2 * n]),
            now_ms=now,
            stats=dict(zip(self.providers, stats, strict=False)),
            extra=replies[: len(extra)],
        )

    @translated("read spend")
    def read_spend(self) -> Spend:
        return parse_spend(self.redis.hgetall(self.keys.spend))

    @translated("read health")
    def read_health(self, provider: str) -> HealthRecord:
        return parse_health(self.redis.hgetall(self.keys.health(provider)))

    @translated("read health")
    def read_healths(self, providers: list[str]) -> dict[str, HealthRecord]:
        """Several providers' health in one round trip."""
        raws = self.run(*(CommandCall(("HGETALL", self.keys.health(p))) for p in providers))
        return {p: parse_health(raw) for p, raw in zip(providers, raws, strict=True)}

    @translated("read stats")
    def read_stats(self, provider: str) -> ProviderStats:
        return parse_stats(self.redis.hgetall(self.keys.stats(provider)))

    @translated("read history")
    def read_history(self, limit: int = 100) -> list[dict[str, Any]]:
        return [json.loads(item) for item in self.redis.lrange(self.keys.history, 0, limit - 1)]

    @translated("read counters")
    def read_counters(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.redis.hgetall(self.keys.counters).items()}

    @translated("set the quota")
    def set_quota(self, target: int, *, per_call: int, ttl_ms: int) -> None:
        """No call starts once ``attributes_appended`` plus ``per_call`` for each call in flight
        reaches ``target`` (for ``ttl_ms``: the run that set it renews it while it runs; a
        crashed run's quota lapses by itself)."""
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.keys.quota, mapping={"target": target, "per_call": per_call})
            pipe.pexpire(self.keys.quota, ttl_ms)
            pipe.execute()

    @translated("clear the quota")
    def clear_quota(self) -> None:
        self.redis.delete(self.keys.quota)

    @translated("read lanes")
    def running_lanes(self) -> int:
        """Lanes whose cycle is calling its provider now."""
        raw = self.redis.hvals(self.keys.lanes)
        return sum(LaneRecord.model_validate_json(v).status is LaneStatus.RUNNING for v in raw)

    @translated("read backlog")
    def backlog(self) -> int:
        return int(self.redis.xlen(self.keys.batches))

    # --- workers ----------------------------------------------------------------------
    @translated("register worker")
    def heartbeat(self, worker: str, queues: list[str], *, slots: int = 0) -> None:
        """The worker is alive and consumes ``queues`` with ``slots`` cycles at once."""
        now = now_ms()
        stale = now - 10 * self.lease_ms
        commands: list[tuple[str | int, ...]] = [("ZADD", self.keys.workers, now, worker)]
        commands += [("HSET", self.keys.worker_slots, worker, slots)] if slots > 0 else []
        commands += [("ZADD", self.keys.queue_workers(queue), now, worker) for queue in queues]
        commands += [("ZREMRANGEBYSCORE", self.keys.workers, "-inf", stale)]
        commands += [("ZREMRANGEBYSCORE", self.keys.queue_workers(p), "-inf", stale) for p in self.providers]
        self.run(*(CommandCall(command) for command in commands))

    @translated("unregister worker")
    def unregister(self, worker: str, *, queues_only: bool = False) -> None:
        """Forget the worker (or only that it serves its queues: it is draining)."""
        commands = [("ZREM", self.keys.queue_workers(provider), worker) for provider in self.providers]
        if not queues_only:
            commands += [("ZREM", self.keys.workers, worker), ("HDEL", self.keys.worker_slots, worker)]
        self.run(*(CommandCall(command) for command in commands))

    @translated("read live workers")
    def live_workers(self) -> set[str]:
        members = self.redis.zrangebyscore(self.keys.workers, now_ms() - self.lease_ms, "+inf")
        return set(members)

    def hold_lease(self, key: str, owner: str, ttl_ms: int) -> bool:
        """Take the lease when free or renew it when ``owner`` holds it (``ttl_ms`` 0: give it
        up); whether ``owner`` holds it now."""
        return bool(self.call(scripts.Lease(lease_key=key, owner=owner, ttl_ms=ttl_ms)))

    def try_lock(self, key: str, ttl_ms: int, owner: str) -> bool:
        with redis_errors("lock"):
            return bool(self.redis.set(key, owner, nx=True, px=ttl_ms))

    @translated("read worker slots")
    def serving_slots(self) -> dict[str, int]:
        """Per provider: the slots (pool concurrency) of live workers consuming its queue."""
        since = now_ms() - self.lease_ms
        slots, *members = self.run(
            CommandCall(("HGETALL", self.keys.worker_slots)),
            *(
                CommandCall(("ZRANGEBYSCORE", self.keys.queue_workers(p), since, "+inf"))
                for p in self.providers
            ),
        )
        return {
            p: sum(int(slots.get(w, 1)) for w in workers)  # a worker that did not say: one slot
            for p, workers in zip(self.providers, members, strict=True)
        }

    @translated("prune worker slots")
    def prune_slots(self) -> None:
        """Forget the slots of workers that stopped heart-beating (e.g. killed)."""
        known = self.redis.hkeys(self.keys.worker_slots)
        live = self.live_workers()
        gone = [w for w in known if w not in live]
        if gone:
            self.redis.hdel(self.keys.worker_slots, *gone)

    @translated("count serving workers")
    def serving_workers(self, provider: str) -> int:
        """Workers with a fresh heartbeat that consume the provider's queue."""
        return int(self.redis.zcount(self.keys.queue_workers(provider), now_ms() - self.lease_ms, "+inf"))

    # --- lanes (the rules are in producer_tasks.lanes) ----------------------------------
    def assign(
        self, *, lane: int, expected: str, provider: str, epoch: int, failures: int = -1
    ) -> str | None:
        """Give the lane a new token (compare-and-set on ``expected``); the token, or None."""
        token, call = self.assign_call(
            lane=lane, expected=expected, provider=provider, epoch=epoch, failures=failures
        )
        return token if self.run(call)[0] == 1 else None

    def assign_call(
        self,
        *,
        lane: int,
        expected: str,
        provider: str,
        epoch: int,
        failures: int = -1,
        token: str = "",
        message: QueuedMessage | None = None,
    ) -> tuple[str, ScriptCall]:
        """The token (``new_token()`` unless given) and the assign call to pipeline with
        others (1: assigned); ``message`` is pushed by the script when it assigns."""
        token = token or new_token()
        keys = self.keys
        queue, unacked, index = (
            (message.list_key, message.unacked_key, message.unacked_index_key) if message else ("", "", "")
        )
        assign = scripts.Assign(
            keys.state, keys.lanes, queue, unacked, index, lane, expected, token,
            provider, epoch, now_ms(), failures, message.payload if message else "",
        )  # fmt: skip
        return token, assign.call()

    def transition(self, **change: Unpack[LaneChange]) -> int:
        """1 done; 0 the producer stopped or the topic changed (lane released); -1 stale token;
        to running only: -2 the budget is spent, -3 ``provider`` is Unhealthy or cooling down."""
        return int(self.run(self.transition_call(**change))[0])

    def transition_call(self, **change: Unpack[LaneChange]) -> ScriptCall:
        """The transition as a call to pipeline with others (its reply as ``transition``'s)."""
        keys, c = self.keys, change
        return scripts.Transition(
            keys.state, keys.lanes, keys.spend, keys.health(c.get("provider", "")), keys.quota, keys.counters,
            c["lane"], c["token"],
            c["status"].value, c.get("worker", ""), now_ms(), c.get("until_ms", 0), c.get("reason", ""),
            c.get("failures", -1), c.get("epoch"), c.get("budget_usd") or 0,
        ).call()  # fmt: skip

    @translated("drop lanes")
    def drop_lanes(self, lanes: Sequence[int]) -> None:
        """Remove lanes outright (their messages become stale)."""
        if lanes:
            self.redis.hdel(self.keys.lanes, *(str(i) for i in lanes))
