"""The wire form of the shared bloom filter (``UpdateConfiguration.bloom_filter``).

``BloomFilterWire`` is the bincode struct of protocol.md; bit ``i`` is the MSB-first bit
``(bits[i // 8] >> (7 - i % 8)) & 1`` (Redis GETBIT order). How attributes map to bits
(normalisation and bit positions) is the fleet's business: ``producer_tasks.bloomhash``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from orchestrator_bridge.protocol.errors import DecodeError

_HEADER = struct.Struct("<BQIQQ")  # version, num_bits, num_hashes, items, len(bits)
WIRE_VERSION = 1
MAX_HASHES = 64


@dataclass(frozen=True, slots=True)
class BloomFilterWire:
    """``BloomFilterWire`` of protocol.md; ``bits`` is ``ceil(num_bits / 8)`` bytes (decoded:
    a view into the payload, not a copy of it: a filter can be most of a 16 MiB frame)."""

    version: int
    num_bits: int
    num_hashes: int
    items: int
    bits: bytes | memoryview

    def encode(self) -> bytes:
        header = _HEADER.pack(self.version, self.num_bits, self.num_hashes, self.items, len(self.bits))
        return header + self.bits

    @classmethod
    def decode(cls, payload: bytes | memoryview) -> BloomFilterWire:
        if len(payload) < _HEADER.size:
            raise DecodeError(f"bloom filter truncated: {len(payload)} bytes, header needs {_HEADER.size}")
        version, num_bits, num_hashes, items, length = _HEADER.unpack_from(payload)
        if version != WIRE_VERSION:
            raise DecodeError(f"unsupported bloom filter version {version} (expected 1)")
        if num_bits == 0 or num_hashes == 0 or num_hashes > MAX_HASHES:
            raise DecodeError(
                f"invalid bloom filter parameters: num_bits={num_bits}, num_hashes={num_hashes}"
            )
        expected = (num_bits + 7) // 8
        if length != expected:
            raise DecodeError(f"bloom filter of {num_bits} bits needs {expected} bytes, header says {length}")
        if len(payload) - _HEADER.size != length:
            raise DecodeError(f"bloom filter body is {len(payload) - _HEADER.size} bytes, expected {length}")
        return cls(version, num_bits, num_hashes, items, memoryview(payload)[_HEADER.size :])
