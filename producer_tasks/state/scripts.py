"""The Lua scripts of ``lua/``: found by file name, each called through a typed wrapper.

Every script names its inputs on its first lines, ``local a_key, b_key = unpack(KEYS)``
and ``local x, y = unpack(ARGV)``. The wrapper of ``assign.lua`` is the dataclass
``Assign``: its fields named ``*_key`` are the KEYS, the others the ARGV, in the order
the script names them (a unit test keeps both in step). A line ``--!include NAME.lua``
pastes a helper file (``_*.lua``, never loaded on its own) in its place.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, fields
from importlib import resources
from typing import Any, ClassVar

_INCLUDE = re.compile(r"^--!include (\S+\.lua)$", re.M)


@dataclass(frozen=True, slots=True)
class ScriptCall:
    """One script invocation, to be run alone or pipelined with others."""

    name: str
    keys: tuple[str, ...]
    args: tuple[str | int | float, ...]


@dataclass(frozen=True, slots=True)
class CommandCall:
    """One plain Redis command, to be pipelined with script calls."""

    args: tuple[str | int | float, ...]


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    """A message the assign script pushes onto a broker list when it assigns the token, and
    registers where kombu registers a delivered message (its unacked hash and index, keyed
    by the token, which is its delivery tag): the consumer then makes no round trip of its
    own to do so (``producer_tasks.worker.transport``)."""

    list_key: str
    payload: str
    unacked_key: str
    unacked_index_key: str


@dataclass(frozen=True, slots=True)
class Acknowledgement:
    """A delivered cycle message acknowledged in the cycle's delivery round trip: the
    commands that remove its unacked entry, and ``done``, called once they ran (the
    broker's own acknowledgement then skips that round trip)."""

    calls: tuple[CommandCall, ...]
    done: Callable[[], None]


ONCE_TTL_MS = 600_000  # how long a resent delivery or outcome is recognised as one


def _arg(value: Any) -> str | int | float:
    if value is None:
        return ""
    if isinstance(value, bool):
        return 1 if value else 0
    if isinstance(value, str | int | float):
        return value
    return str(value)


class Script:
    """Base of the wrappers: ``call()`` turns the fields into KEYS and ARGV."""

    _layout: ClassVar[dict[type, tuple[tuple[str, ...], tuple[str, ...]]]] = {}
    __slots__ = ()

    @classmethod
    def file_name(cls) -> str:
        return f"{cls.__name__.lower()}.lua"

    @classmethod
    def layout(cls) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(KEYS names, ARGV names) in order."""
        found = Script._layout.get(cls)
        if found is None:
            names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
            found = (
                tuple(n for n in names if n.endswith("_key")),
                tuple(n for n in names if not n.endswith("_key")),
            )
            Script._layout[cls] = found
        return found

    def call(self) -> ScriptCall:
        key_names, arg_names = self.layout()
        return ScriptCall(
            self.file_name().removesuffix(".lua"),
            tuple(getattr(self, n) for n in key_names),
            tuple(_arg(getattr(self, n)) for n in arg_names),
        )


@dataclass(frozen=True, slots=True)
class Assign(Script):
    """Give a lane a new dispatch token (compare-and-set); 1 assigned, 0 not."""

    state_key: str
    lanes_key: str
    queue_key: str  # the broker list ``message`` goes to
    unacked_key: str  # kombu's unacked hash and index, where ``message`` is registered
    unacked_index_key: str
    lane: int
    expected: str  # "" = the lane must be absent
    token: str
    provider: str
    epoch: int  # -1 never matches: the release path
    now_ms: int
    failures: int  # -1 = keep the lane's count
    message: str  # "" = none (the caller sends it after)


@dataclass(frozen=True, slots=True)
class Transition(Script):
    """Move a lane to a status if its token is current; 1 done, 0 released, -1 stale
    (to running: -2 the budget is spent, -3 the provider is Unhealthy or cooling down, -4 the
    attribute quota is reached)."""

    state_key: str
    lanes_key: str
    spend_key: str
    health_key: str  # the provider's (read only when moving to running)
    quota_key: str  # with counters_key: the attribute quota (read only when moving to running)
    counters_key: str
    lane: int
    token: str
    status: str
    worker: str
    now_ms: int
    until_ms: int
    reason: str
    failures: int  # -1 = keep
    epoch: int | None  # None = do not check
    budget_usd: float  # 0 = none; checked when moving to running (-2: spent)


@dataclass(frozen=True, slots=True)
class Deliver(Script):
    """Append a batch if its epoch is current, count its bloom check, close its journal
    entry; the entry id, "" (nothing to append), or nothing (topic changed)."""

    state_key: str
    batches_key: str
    counters_key: str
    once_key: str  # per cycle (its lane token): a resent call appends once
    journal_key: str
    bloom_meta_key: str
    epoch: int
    batch_json: str
    attributes: int  # 0: nothing to append (counters and journal only)
    call_id: str  # the journal entry to close; "" = none
    checked: int  # candidates the bloom check counted (0 = none or unknown)
    filtered: int  # of which were already known
    once_ttl_ms: int


@dataclass(frozen=True, slots=True)
class Outcome(Script):
    """Record one call's outcome: statistics, health, bounded history; the new status."""

    health_key: str
    stats_key: str
    history_key: str
    once_key: str  # per call: a resent call counts once
    spend_key: str
    success: bool
    now_ms: int
    response_ms: float
    prompt_tokens: int
    completion_tokens: int
    candidates: int
    unique: int
    unhealthy_after: int
    cooldown_until_ms: int  # 0 = none
    error: str
    history_json: str  # "" = nothing to record
    history_size: int
    counts_as_request: bool  # health checks are not requests
    alpha: float  # of the moving averages of success and novelty
    rate_limited: bool  # a 429: cooldown and Degraded, not counted towards Unhealthy
    once_ttl_ms: int
    cost_usd: float  # of this call's tokens at the provider's prices
    cooldown_cap_ms: int  # no stored cooldown ends later than now + this


@dataclass(frozen=True, slots=True)
class RateLimit(Script):
    """Debit the fleet-wide request and token buckets; 0, or the ms to wait."""

    requests_key: str
    tokens_key: str
    now_ms: int
    rpm: int  # 0 = unlimited
    tpm: int  # 0 = unlimited
    tokens: int


@dataclass(frozen=True, slots=True)
class Remember(Script):
    """Record delivered and repeated items of the current topic, the facet's counts, the
    proposed facets (novelty prompts) and what the cycle's prompt strategy brought."""

    state_key: str
    known_key: str
    facets_key: str
    yield_key: str
    strategy_key: str
    epoch: int
    delivered_json: str
    repeated_json: str
    facet: str  # "" = none
    brought: int  # new attributes this cycle delivered (counted for its facet)
    proposed_json: str  # the topic's facets, when this cycle asked the model for them
    cap: int
    ttl_ms: int
    provider: str
    strategy: str  # "" = none (the cycle that asked for the facets)
    cost: float  # tokens weighted by price (strategy.cost_units)
    decay: float
    trend_keep: float  # the provider's recent yield: the share of it each cycle keeps
    strategies_json: str  # the strategies the provider's evidence decays for


@dataclass(frozen=True, slots=True)
class Lease(Script):
    """Take or renew a lease held by one owner at a time; 1 when the caller holds it."""

    lease_key: str
    owner: str
    ttl_ms: int


@dataclass(frozen=True, slots=True)
class Settle(Script):
    """Acknowledge and delete the entries the bridge handled, copying those it wrote to the
    resend window; their window ids ("" for an entry gone meanwhile)."""

    batches_key: str
    window_key: str
    group: str
    written_json: str  # ids of the entries written to the orchestrator, in order
    done_json: str  # ids of every handled entry (written, stale or unreadable)
    trim_to: str  # the window forgets entries older than this id; "" = none


WRAPPERS: tuple[type[Script], ...] = (
    Assign,
    Transition,
    Deliver,
    Outcome,
    RateLimit,
    Lease,
    Remember,
    Settle,
)


def script_files() -> dict[str, str]:
    """Script name -> source with its includes pasted in (helpers ``_*.lua`` excluded)."""
    folder = resources.files("producer_tasks.state").joinpath("lua")
    sources = {entry.name: entry.read_text() for entry in folder.iterdir() if entry.name.endswith(".lua")}

    def expand(match: re.Match[str]) -> str:
        return sources[match.group(1)]

    return {
        name.removesuffix(".lua"): _INCLUDE.sub(expand, text)
        for name, text in sources.items()
        if not name.startswith("_")
    }
