"""How an attribute maps to bits of the shared bloom filter (protocol.md, bit for bit).

* ``normalize(text)``: NFKC, full Unicode lowercase, whitespace runs -> one space, trimmed.
* ``bit_indices(text, m, k)``: ``h = xxh3_128(key)``, ``h1`` low / ``h2`` high 64 bits,
  index ``i`` is ``((h1 + i*h2) mod 2**64) mod m``.
* ``BloomFilter``: a pure-Python filter in the same MSB-first layout as the Redis bitmap
  (the reference orchestrator and cross-checks use it). Its wire form is the bridge's
  business (``orchestrator_bridge.convert``).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable

import xxhash

from producer_tasks.canonical import canonical

_MASK64 = (1 << 64) - 1
# Unicode White_Space, as Rust's char::is_whitespace (Python's str.split() would also
# split on U+001C..U+001F, which Rust does not).
_WHITESPACE_RUN = re.compile("[\t\n\x0b\x0c\r \x85\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+")
MAX_HASHES = 64


def normalize(text: str) -> str:
    """The protocol's attribute key: NFKC, lowercase, whitespace collapsed and trimmed."""
    folded = unicodedata.normalize("NFKC", text).lower()
    return _WHITESPACE_RUN.sub(" ", folded).strip(" ")


def hash_pair(text: str) -> tuple[int, int]:
    """``(h1, h2)``: the low and high 64 bits of xxh3_128 of the normalised key."""
    return _key_pair(normalize(text))


def _key_pair(key: str) -> tuple[int, int]:
    h = xxhash.xxh3_128_intdigest(key.encode(), seed=0)
    return h & _MASK64, h >> 64


def bit_indices(text: str, num_bits: int, num_hashes: int) -> list[int]:
    """The ``num_hashes`` bit indices of an attribute in a filter of ``num_bits`` bits."""
    return key_indices(normalize(text), num_bits, num_hashes)


def key_indices(key: str, num_bits: int, num_hashes: int) -> list[int]:
    """``bit_indices`` of a key that is normalised already (``normalize(text)``)."""
    h1, h2 = _key_pair(key)
    return [((h1 + i * h2) & _MASK64) % num_bits for i in range(num_hashes)]


def check_keys(candidates: list[str], *, near_duplicates: bool) -> tuple[list[str], list[int]]:
    """The normalised keys a batch sets: each candidate's exact form, then (near-duplicate
    check) its canonical form where that is another key; and how many keys each candidate
    has (1 or 2).

    Canonical forms share the exact forms' key space: a candidate whose canonical form is
    an item's exact form (the orchestrator's filter holds exact forms) is a near-duplicate
    of it, and a canonical form equal to the exact one (most names: "Cheddar") is one key,
    set once. This merges nothing the canonical check would not merge anyway: the exact
    form of A being the canonical form of B means A and B have one canonical form.
    """
    keys = [normalize(candidate) for candidate in candidates]
    if not near_duplicates:
        return keys, [1] * len(keys)
    both: list[str] = []
    counts: list[int] = []
    for candidate, exact in zip(candidates, keys, strict=True):
        folded = normalize(canonical(candidate))
        own = (exact,) if folded == exact else (exact, folded)
        both += own
        counts.append(len(own))
    return both, counts


def optimal_parameters(capacity: int, error_rate: float) -> tuple[int, int]:
    """Standard sizing: ``m = -n ln p / (ln 2)^2``, ``k = (m / n) ln 2``."""
    if capacity < 1:
        raise ValueError("bloom capacity must be at least 1")
    if not 0.0 < error_rate < 1.0:
        raise ValueError("bloom error rate must be between 0 and 1 (exclusive)")
    num_bits = max(8, math.ceil(-capacity * math.log(error_rate) / (math.log(2) ** 2)))
    num_hashes = max(1, min(MAX_HASHES, round(num_bits / capacity * math.log(2))))
    return num_bits, num_hashes


class BloomFilter:
    """A pure-Python filter in the shared layout (MSB first, as GETBIT/SETBIT)."""

    def __init__(
        self, num_bits: int, num_hashes: int, *, items: int = 0, bits: bytes | memoryview | None = None
    ) -> None:
        if num_bits < 1 or not 1 <= num_hashes <= MAX_HASHES:
            raise ValueError("num_bits must be >= 1 and num_hashes in 1..=64")
        size = (num_bits + 7) // 8
        if bits is not None and len(bits) != size:
            raise ValueError(f"a filter of {num_bits} bits has {size} bytes, got {len(bits)}")
        self.num_bits = num_bits
        self.num_hashes = num_hashes
        self.items = items
        self.bits = bytearray(bits if bits is not None else size)

    @classmethod
    def with_capacity(cls, capacity: int, error_rate: float) -> BloomFilter:
        return cls(*optimal_parameters(capacity, error_rate))

    def add(self, text: str) -> bool:
        """Insert; True when the attribute was not (probably) present before."""
        new = False
        for i in bit_indices(text, self.num_bits, self.num_hashes):
            byte, mask = i >> 3, 0x80 >> (i & 7)
            if not self.bits[byte] & mask:
                new = True
                self.bits[byte] |= mask
        if new:
            self.items += 1
        return new

    def update(self, texts: Iterable[str]) -> None:
        for text in texts:
            self.add(text)

    def __contains__(self, text: object) -> bool:
        if not isinstance(text, str):
            return False
        return all(
            self.bits[i >> 3] & (0x80 >> (i & 7)) for i in bit_indices(text, self.num_bits, self.num_hashes)
        )
