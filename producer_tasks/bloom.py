"""The shared bloom filter in Redis (the seed's Phase 2).

The bits live in one Redis string in the wire layout (MSB first = GETBIT/SETBIT order),
with ``num_bits``, ``num_hashes``, ``items``, ``loaded_ms``, a ``generation`` counter and
the fleet-wide counters beside it in a hash. An orchestrator filter is loaded atomically
(temporary key, then RENAME); before one arrives the producer sizes its own from
``PRODUCER_BLOOM_CAPACITY`` and ``PRODUCER_BLOOM_ERROR_RATE``. A batch is checked and
added in one atomic script (``lua/bloom_check_add.lua``).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import redis

from orchestrator_bridge.bloomwire import BloomFilterWire, bit_indices, optimal_parameters
from orchestrator_bridge.errors import DecodeError
from producer_tasks.errors import ConfigurationError
from producer_tasks.fleet import Fleet, now_ms, redis_errors
from producer_tasks.records import BloomCounts
from producer_tasks.settings import Settings

log = logging.getLogger(__name__)
MAX_FILTER_BITS = 8 * 512 * 1024 * 1024  # a Redis string holds at most 512 MiB


@dataclass(frozen=True, slots=True)
class FilterShape:
    generation: str
    num_bits: int
    num_hashes: int


@dataclass(frozen=True, slots=True)
class FilterResult:
    passed: list[str]
    counts: BloomCounts


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
    num_bits, num_hashes = optimal_parameters(settings.bloom_capacity, settings.bloom_error_rate)
    keys = fleet.keys
    with redis_errors("create bloom filter"), fleet.redis.pipeline(transaction=True) as pipe:
        try:
            pipe.watch(keys.bloom_meta)
            if pipe.hget(keys.bloom_meta, "generation"):
                pipe.unwatch()
            else:
                pipe.multi()
                pipe.delete(keys.bloom)
                pipe.setbit(keys.bloom, num_bits - 1, 0)  # allocates ceil(m/8) zero bytes
                pipe.hset(
                    keys.bloom_meta,
                    mapping={
                        "generation": "1",
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
    if created is None:  # pragma: no cover - someone deleted it at once
        raise ConfigurationError("bloom filter could not be created")
    return created


def load_wire(fleet: Fleet, payload: bytes) -> FilterShape:
    """Replace the shared filter with the orchestrator's (bincode BloomFilterWire).

    The bits are written to a temporary key and RENAMEd over the filter in the same
    transaction that updates its shape, so no batch ever sees a half-written filter.
    Raises DecodeError for a malformed filter (the old one stays in force).
    """
    wire = BloomFilterWire.decode(payload)
    if wire.num_bits > MAX_FILTER_BITS:
        raise DecodeError(f"bloom filter of {wire.num_bits} bits is larger than Redis can hold")
    keys = fleet.keys
    temporary = f"{keys.bloom}:loading:{now_ms()}"
    loaded = now_ms()
    with redis_errors("load bloom filter"):
        fleet.redis.set(temporary, wire.bits, ex=600)
        pipe = fleet.redis.pipeline(transaction=True)
        pipe.rename(temporary, keys.bloom)
        pipe.hincrby(keys.bloom_meta, "generation", 1)
        pipe.hset(
            keys.bloom_meta,
            mapping={
                "num_bits": wire.num_bits,
                "num_hashes": wire.num_hashes,
                "items": wire.items,
                "loaded_ms": loaded,
                "source": "orchestrator",
            },
        )
        generation = pipe.execute()[1]
    log.info(
        "loaded the orchestrator's bloom filter: %d bits, %d hashes, %d items",
        wire.num_bits,
        wire.num_hashes,
        wire.items,
    )
    return FilterShape(str(generation), wire.num_bits, wire.num_hashes)


def check_and_add(fleet: Fleet, settings: Settings, candidates: list[str]) -> FilterResult:
    """Drop candidates already in the filter and add the rest, atomically, in one call."""
    key = fleet.keys.bloom_meta
    for _ in range(5):
        shape = _shapes.get(key) or ensure_filter(fleet, settings)
        _shapes.put(key, shape)
        offsets: list[int] = []
        for candidate in candidates:
            offsets.extend(bit_indices(candidate, shape.num_bits, shape.num_hashes))
        result = fleet.script(
            "bloom_check_add",
            [fleet.keys.bloom, key],
            [shape.generation, shape.num_hashes, *offsets],
        )
        if result and result[0] == "reload":
            _shapes.put(key, None)
            continue
        flags, total, filtered, loaded_ms = result
        passed = [c for c, new in zip(candidates, flags, strict=True) if int(new) == 1]
        counts = BloomCounts(
            total_candidates=int(total),
            filtered_candidates=int(filtered),
            last_filter_update_ms=int(loaded_ms),
        )
        return FilterResult(passed, counts)
    raise ConfigurationError("bloom filter keeps changing; giving up on this batch")


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
