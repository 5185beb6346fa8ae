"""The shared bloom filter in Redis.

The bits live in one Redis string in the wire layout (MSB first = GETBIT/SETBIT order),
under a key named by the filter's generation, a random token (``…:bloom:<generation>``); its shape
(``num_bits``, ``num_hashes``, ``items``, ``loaded_ms``, ``generation``) and the fleet-wide
counters are in a hash beside it. An orchestrator filter is loaded atomically: written to
a temporary key, then RENAMEd to the next generation's key in the transaction that
publishes the new shape. Before one arrives the producer sizes its own from
``PRODUCER_BLOOM_CAPACITY`` and ``PRODUCER_BLOOM_ERROR_RATE``.

A batch is checked and added with one ``BITFIELD … SET u1 offset 1`` command: it returns
every bit's old value and sets it, atomically, so a candidate whose k old bits were all 1
was already seen, and two workers that produce the same new attribute at the same moment
forward it once. The generation is read right after it in the same round trip: if the
filter was replaced meanwhile, the command hit the old (now absent) key, the stray key is
removed and the batch is checked again against the new filter.
"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass
from typing import Any

import redis

from producer_tasks.bloomhash import bit_indices, check_keys, key_indices, optimal_parameters
from producer_tasks.clock import now_ms
from producer_tasks.errors import ConfigurationError, StateError
from producer_tasks.records import BloomCounts
from producer_tasks.settings import Settings
from producer_tasks.state import roundtrip
from producer_tasks.state.client import redis_errors
from producer_tasks.state.fleet import Fleet
from producer_tasks.state.scripts import CommandCall

log = logging.getLogger(__name__)
MAX_FILTER_BITS = 8 * 512 * 1024 * 1024  # a Redis string holds at most 512 MiB
LOADING_TTL_S = 600  # a half-loaded temporary key cleans itself up; the loaded filter has no TTL


@dataclass(frozen=True, slots=True)
class FilterShape:
    generation: str
    num_bits: int
    num_hashes: int


@dataclass(frozen=True, slots=True)
class FilterResult:
    passed: list[str]
    counts: BloomCounts  # fleet-wide, this batch included
    checked: int  # candidates to count as checked (0 when the check's answer is unknown)
    filtered: int  # of which were already known


class _ShapeCache:
    """The filter's shape, cached per process; the script says when it changed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._shapes: dict[str, FilterShape] = {}

    def get(self, key: str) -> FilterShape | None:
        with self._lock:
            return self._shapes.get(key)

    def put(self, key: str, shape: FilterShape | None) -> None:
        with self._lock:
            if shape is None:
                self._shapes.pop(key, None)
            else:
                self._shapes[key] = shape


_shapes = _ShapeCache()


def new_generation() -> str:
    """A generation token that never repeats (a cached shape can never match a new filter)."""
    return uuid.uuid4().hex[:16]


def bits_key(fleet: Fleet, generation: str) -> str:
    return f"{fleet.keys.bloom}:{generation}"


def read_shape(fleet: Fleet) -> FilterShape | None:
    with redis_errors("read bloom filter"):
        generation, bits, hashes = fleet.redis.hmget(
            fleet.keys.bloom_meta, ["generation", "num_bits", "num_hashes"]
        )
    if not generation or not bits or not hashes:
        return None
    return FilterShape(generation, int(bits), int(hashes))


def ensure_filter(fleet: Fleet, settings: Settings) -> FilterShape:
    """The filter in use; creates the producer's own one when none exists yet."""
    shape = read_shape(fleet)
    if shape is not None:
        return shape
    # the near-duplicate check adds at most one canonical form per item (none where it is the
    # exact form), and a new item passes only if neither form is a false positive: sized for
    # twice the items at half the rate, the target holds
    forms = 2 if settings.near_duplicates else 1
    num_bits, num_hashes = optimal_parameters(
        settings.bloom_capacity * forms, settings.bloom_error_rate / forms
    )
    meta = fleet.keys.bloom_meta
    with redis_errors("create bloom filter"), fleet.redis.pipeline(transaction=True) as pipe:
        try:
            pipe.watch(meta)
            if pipe.hget(meta, "generation"):
                pipe.unwatch()
            else:
                generation = new_generation()
                pipe.multi()
                pipe.setbit(bits_key(fleet, generation), num_bits - 1, 0)  # ceil(m/8) zero bytes
                pipe.hset(
                    meta,
                    mapping={
                        "generation": generation,
                        "num_bits": num_bits,
                        "num_hashes": num_hashes,
                        "items": 0,
                        "loaded_ms": 0,
                        "source": "producer",
                    },
                )
                pipe.execute()
                log.info("created the producer's bloom filter: %d bits, %d hashes", num_bits, num_hashes)
        except redis.WatchError:
            pass
    created = read_shape(fleet)
    if created is None:  # pragma: no cover - deleted at once by someone else
        raise StateError("bloom filter could not be created")
    return created


@dataclass(frozen=True, slots=True)
class LoadedFilter:
    """A filter to load (the orchestrator's, decoded by the bridge)."""

    num_bits: int
    num_hashes: int
    items: int
    bits: bytes | memoryview  # a view: redis-py sends it without copying it


def check(wire: LoadedFilter) -> LoadedFilter:
    """The orchestrator's filter, if Redis can hold it; else ConfigurationError (nothing changed)."""
    if wire.num_bits > MAX_FILTER_BITS:
        raise ConfigurationError(f"bloom filter of {wire.num_bits} bits is larger than Redis can hold")
    if len(wire.bits) != (wire.num_bits + 7) // 8:
        raise ConfigurationError(f"bloom filter of {wire.num_bits} bits has {len(wire.bits)} bytes")
    return wire


def load(fleet: Fleet, wire: LoadedFilter) -> FilterShape:
    """Replace the shared filter with the orchestrator's.

    Raises ConfigurationError for a filter Redis cannot hold (the old one stays in force).
    """
    check(wire)
    keys = fleet.keys
    loaded = now_ms()
    temporary = f"{keys.bloom}:loading:{loaded}"
    with redis_errors("load bloom filter"):
        fleet.redis.set(temporary, memoryview(wire.bits), ex=LOADING_TTL_S)
        for _ in range(20):
            with fleet.redis.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(keys.bloom_meta)
                    old = pipe.hget(keys.bloom_meta, "generation")
                    generation = new_generation()
                    pipe.multi()
                    pipe.rename(temporary, bits_key(fleet, generation))
                    pipe.persist(bits_key(fleet, generation))  # RENAME keeps the TTL
                    pipe.hset(
                        keys.bloom_meta,
                        mapping={
                            "generation": generation,
                            "num_bits": wire.num_bits,
                            "num_hashes": wire.num_hashes,
                            "items": wire.items,
                            "loaded_ms": loaded,
                            "source": "orchestrator",
                        },
                    )
                    if old:
                        pipe.delete(bits_key(fleet, old))
                    pipe.execute()
                    break
                except redis.WatchError:
                    continue
        else:
            raise StateError("bloom filter changed concurrently too often")
    log.info(
        "loaded the orchestrator's bloom filter: %d bits, %d hashes, %d items",
        wire.num_bits,
        wire.num_hashes,
        wire.items,
    )
    return FilterShape(generation, wire.num_bits, wire.num_hashes)


def _bitfield_command(key: str, normalized: list[str], shape: FilterShape) -> roundtrip.Command:
    """``BITFIELD key SET u1 <offset> 1 …``: every key's bits set, each ``SET`` answering
    the bit's old value (packed by hiredis, as every round trip's commands are)."""
    command: list[str | int] = ["BITFIELD", key]
    for item in normalized:
        for offset in key_indices(item, shape.num_bits, shape.num_hashes):
            command += ("SET", "u1", offset, 1)
    return tuple(command)


def _check_commands(
    fleet: Fleet, key: str, keys: list[str], shape: FilterShape, *, journal: Journal | None, retried: bool
) -> list[roundtrip.Command]:
    """The check's one round trip: the journal entry (a retry after a filter swap overwrites
    its own), the bits, the filter's meta, the topic's epoch."""
    meta = fleet.keys.bloom_meta
    commands: list[roundtrip.Command] = []
    if journal is not None:
        commands.append(("HSET" if retried else "HSETNX", fleet.keys.journal, journal.call_id, journal.entry))
    commands.append(_bitfield_command(key, keys, shape))
    commands.append(("HMGET", meta, "generation", "loaded_ms", "total_candidates", "filtered_candidates"))
    if journal is not None:
        commands.append(("HGET", fleet.keys.state, "epoch"))
    return commands


def _raw(fleet: Fleet, commands: list[roundtrip.Command]) -> list[Any]:
    """``commands`` in one round trip; their replies (an error reply raised)."""
    read = roundtrip.execute(fleet.redis, commands)
    for reply in read:
        if isinstance(reply, redis.ResponseError):
            raise reply
    return read


def _unseen(candidates: list[str], forms: list[int], old_bits: list[int], k: int) -> list[str]:
    """The candidates new to the filter: some bit of its exact form was 0 and (near-duplicate
    check) some bit of its canonical form too. BITFIELD runs its SETs in order, so the second
    of two variants in one batch sees the first one's bits."""
    seen = [all(old_bits[i * k : (i + 1) * k]) for i in range(len(old_bits) // k)]
    passed = []
    first = 0  # the candidate's first key among the check's keys
    for candidate, count in zip(candidates, forms, strict=True):
        if not any(seen[first : first + count]):
            passed.append(candidate)
        first += count
    return passed


@dataclass(frozen=True, slots=True)
class Journal:
    """A cycle's batch with every candidate, written in the check's round trip: if the cycle
    dies before its append, ``stream.recover_journal`` appends it whole."""

    call_id: str
    epoch: int
    entry: str  # ``stream.journal_entry(...)``


def _result(candidates: list[str], passed: list[str], before: BloomCounts) -> FilterResult:
    """What a check let through, with the fleet's counters as they are after it."""
    filtered = len(candidates) - len(passed)
    counts = BloomCounts(
        total_candidates=before.total_candidates + len(candidates),
        filtered_candidates=before.filtered_candidates + filtered,
        last_filter_update_ms=before.last_filter_update_ms,
    )
    return FilterResult(passed, counts, checked=len(candidates), filtered=filtered)


def check_and_add(
    fleet: Fleet,
    settings: Settings,
    candidates: list[str],
    *,
    journal: Journal | None = None,
    defer_counters: bool = False,
) -> FilterResult:
    """Drop candidates already in the filter and add the rest, atomically, in one command.

    With a ``journal`` (as a cycle calls it), the batch is journalled in the same round
    trip, before the bits are set, and the topic's epoch is read back: a check that ran
    for an old topic sets no bit in the new topic's filter. When an earlier attempt of the
    same call may have set these bits (its reply was lost), every candidate passes: at
    least once, the orchestrator de-duplicates.

    The fleet-wide counters are ``checked``/``filtered``; unless ``defer_counters`` (the
    cycle's append counts them), they are applied here in a second round trip.
    """
    meta = fleet.keys.bloom_meta
    keys, forms = check_keys(candidates, near_duplicates=settings.near_duplicates)
    retried = False
    for _ in range(5):
        shape = _shapes.get(meta) or ensure_filter(fleet, settings)
        _shapes.put(meta, shape)
        key = bits_key(fleet, shape.generation)
        with redis_errors("bloom check-and-add"):
            replies = _raw(fleet, _check_commands(fleet, key, keys, shape, journal=journal, retried=retried))
            if journal is not None:
                journalled, old_bits, (generation, loaded_ms, total, filtered_before), epoch = replies
            else:
                old_bits, (generation, loaded_ms, total, filtered_before) = replies
                journalled, epoch = 1, None
            if generation != shape.generation:  # replaced meanwhile: we hit the old key
                fleet.redis.delete(key)
                _shapes.put(meta, None)
        counts = BloomCounts(
            total_candidates=int(total or 0),
            filtered_candidates=int(filtered_before or 0),
            last_filter_update_ms=int(loaded_ms or 0),
        )
        if journal is not None and epoch != str(journal.epoch):  # the append will drop it
            return FilterResult(candidates, counts, checked=0, filtered=0)
        if generation != shape.generation:
            retried = True
            continue
        if not journalled and not retried:  # a lost reply: this call's bits may be set already
            return FilterResult(candidates, counts, checked=0, filtered=0)
        result = _result(candidates, _unseen(candidates, forms, old_bits, shape.num_hashes), counts)
        if not defer_counters:
            fleet.run(
                CommandCall(("HINCRBY", meta, "total_candidates", result.checked)),
                CommandCall(("HINCRBY", meta, "filtered_candidates", result.filtered)),
                CommandCall(("HINCRBY", meta, "items", len(result.passed))),
            )
        return result
    raise StateError("bloom filter keeps changing; giving up on this batch")


def read_counts(fleet: Fleet) -> BloomCounts | None:
    """Fleet-wide counters, or None while no filter is in use."""
    with redis_errors("read bloom counters"):
        total, filtered, loaded, generation = fleet.redis.hmget(
            fleet.keys.bloom_meta, ["total_candidates", "filtered_candidates", "loaded_ms", "generation"]
        )
    if not generation:
        return None
    return BloomCounts(
        total_candidates=int(total or 0),
        filtered_candidates=int(filtered or 0),
        last_filter_update_ms=int(loaded or 0),
    )


def contains(fleet: Fleet, texts: list[str]) -> list[bool]:
    """Read-only membership (nothing is added): all k bits set, as the orchestrator checks."""
    shape = read_shape(fleet)
    if shape is None or not texts:
        return [False] * len(texts)
    args: list[object] = []
    for text in texts:
        for offset in bit_indices(text, shape.num_bits, shape.num_hashes):
            args.extend(("GET", "u1", offset))
    with redis_errors("probe bloom filter"):
        bits = fleet.redis.execute_command("BITFIELD_RO", bits_key(fleet, shape.generation), *args)
    k = shape.num_hashes
    return [all(bits[i * k : (i + 1) * k]) for i in range(len(texts))]


def drop_calls(generation: str | None, fleet: Fleet) -> tuple[CommandCall, ...]:
    """Commands that forget the filter (a new topic starts a fresh one)."""
    calls = [CommandCall(("DEL", fleet.keys.bloom_meta))]
    if generation:
        calls.append(CommandCall(("DEL", bits_key(fleet, generation))))
    return tuple(calls)
