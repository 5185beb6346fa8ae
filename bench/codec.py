"""Encode+decode of a 20-attribute AttributeBatch: our bincode codec against json."""

from __future__ import annotations

import json
import statistics
import timeit

from bench.report import write_section
from orchestrator_bridge import (
    AttributeBatch,
    BloomFilterStats,
    GenerationMetadata,
    ProviderStatus,
    decode,
    encode,
)

ATTRIBUTES = tuple(f"Attribute number {i} – Comté de Franche" for i in range(20))


def message() -> AttributeBatch:
    return AttributeBatch(
        producer_id="producer-1",
        attributes=ATTRIBUTES,
        provider_used="openai",
        generation_metadata=GenerationMetadata(812, 350, 120, 230, ProviderStatus.HEALTHY),
        bloom_stats=BloomFilterStats(10_000, 1_200, 0.12, 1_700_000_000_000),
    )


def as_dict() -> dict[str, object]:
    return {
        "producer_id": "producer-1",
        "attributes": list(ATTRIBUTES),
        "provider_used": "openai",
        "generation_metadata": {
            "response_time_ms": 812,
            "tokens_used": 350,
            "prompt_tokens": 120,
            "completion_tokens": 230,
            "provider_status": "healthy",
        },
        "bloom_stats": {
            "total_candidates": 10_000,
            "filtered_candidates": 1_200,
            "filter_effectiveness": 0.12,
            "last_filter_update": 1_700_000_000_000,
        },
    }


def best_us(func: object, *, number: int, repeat: int) -> float:
    times = timeit.repeat(func, number=number, repeat=repeat)  # type: ignore[arg-type]
    return min(times) / number * 1e6


def run(*, repeat: int = 7, number: int = 5000) -> dict[str, float]:
    msg, data = message(), as_dict()
    assert decode(encode(msg)) == msg
    ours_runs, json_runs = [], []
    for _ in range(3):  # interleave to share the machine's noise
        ours_runs.append(best_us(lambda: decode(encode(msg)), number=number, repeat=repeat))
        json_runs.append(best_us(lambda: json.loads(json.dumps(data)), number=number, repeat=repeat))
    ours, baseline = statistics.median(ours_runs), statistics.median(json_runs)
    encode_us = best_us(lambda: encode(msg), number=number, repeat=repeat)
    payload = encode(msg)
    decode_us = best_us(lambda: decode(payload), number=number, repeat=repeat)
    result = {
        "ours_us": ours,
        "json_us": baseline,
        "speed_ratio": baseline / ours,
        "encode_us": encode_us,
        "decode_us": decode_us,
        "bincode_bytes": len(payload),
        "json_bytes": len(json.dumps(data).encode()),
    }
    write_section(
        "codec",
        f"""
## Codec: encode + decode of a 20-attribute AttributeBatch

Baseline: `json.loads(json.dumps(d))` of the same data as a plain dict (C-accelerated json).

| | µs per round trip | bytes |
| --- | ---: | ---: |
| bincode (ours, pure Python) | {ours:.1f} | {len(payload)} |
| json (baseline) | {baseline:.1f} | {result["json_bytes"]} |

**Speed ratio json / ours = {baseline / ours:.2f}** (goal ≥ 1.0: ours at least as fast).
Ours split: encode {encode_us:.1f} µs, decode {decode_us:.1f} µs (best of {repeat} × {number}).
""",
    )
    return result


if __name__ == "__main__":
    print(run())
