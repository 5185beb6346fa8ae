"""The orchestrator team's vectors (copied from shared/protocol-vectors.jsonl)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from orchestrator_bridge import (
    AttributeBatch,
    BloomFilterWire,
    ErrorStatus,
    ProducerStatus,
    ProviderStatus,
    StartTopic,
    Stop,
    UpdateConfiguration,
    decode,
    encode,
)
from orchestrator_bridge.convert import filter_from_wire, filter_to_wire
from producer_tasks.bloomhash import BloomFilter, bit_indices, hash_pair, normalize

VECTORS = [
    json.loads(line)
    for line in (Path(__file__).resolve().parents[1] / "data" / "protocol-vectors.jsonl")
    .read_text()
    .splitlines()
    if line.strip()
]


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [v for v in VECTORS if v["kind"] == kind]


def test_every_kind_is_present() -> None:
    assert len(of_kind("key")) == 8
    assert len(of_kind("message")) == 5
    assert len(of_kind("bloom_wire")) == 1


@pytest.mark.parametrize("vector", of_kind("key"), ids=lambda v: repr(v["input"]))
def test_key_vectors(vector: dict[str, Any]) -> None:
    assert normalize(vector["input"]) == vector["normalized"]
    h1, h2 = hash_pair(vector["input"])
    assert (str(h1), str(h2)) == (vector["h1"], vector["h2"])
    assert bit_indices(vector["input"], 1000003, 7) == vector["bits_m1000003_k7"]


@pytest.mark.parametrize("vector", of_kind("message"), ids=lambda v: v["rust"].split(" ")[0])
def test_message_vectors_round_trip_byte_exact(vector: dict[str, Any]) -> None:
    payload = bytes.fromhex(vector["bincode_hex"])
    message = decode(payload)
    assert encode(message) == payload


def test_message_vectors_decode_to_the_expected_values() -> None:
    start, update, stop, batch, status = (decode(bytes.fromhex(v["bincode_hex"])) for v in of_kind("message"))
    assert isinstance(start, StartTopic)
    assert (start.topic, start.prompt) == ("cheese", "List {batch_size} {topic}")
    assert start.provider_weights == {"openai": 0.75}
    assert start.generation_config.temperature == pytest.approx(0.7, abs=1e-6)
    assert (start.generation_config.max_tokens, start.generation_config.batch_size) == (256, 5)
    assert update == UpdateConfiguration(prompt="p", provider_weights=None, bloom_filter=b"\x01\x02\x03")
    assert stop == Stop()
    assert isinstance(batch, AttributeBatch)
    assert batch.attributes == ("Brie", "Comté")
    assert batch.provider_used == "mock"
    assert batch.generation_metadata.tokens_used == 10
    assert batch.generation_metadata.provider_status is ProviderStatus.HEALTHY
    assert batch.bloom_stats is not None
    assert batch.bloom_stats.filter_effectiveness == 0.2
    assert batch.bloom_stats.last_filter_update == 1_700_000_000_000
    assert isinstance(status, ProducerStatus)
    assert status.status == ErrorStatus("boom")
    health = status.provider_health["anthropic"]
    assert health.consecutive_failures == 3
    assert health.last_success is not None
    assert (health.last_success.secs, health.last_success.nanos) == (1_700_000_000, 5)
    assert health.last_failure is None
    assert health.average_response_time.ms == 1500
    assert health.current_status is ProviderStatus.UNHEALTHY


def test_bloom_wire_vector() -> None:
    (vector,) = of_kind("bloom_wire")
    payload = bytes.fromhex(vector["bincode_hex"])
    wire = BloomFilterWire.decode(payload)
    assert (wire.version, wire.num_bits, wire.num_hashes, wire.items) == (1, 64, 3, 2)
    assert wire.encode() == payload
    built = BloomFilter(vector["num_bits"], vector["num_hashes"])
    built.update(vector["items"])
    assert filter_to_wire(built).encode() == payload
    loaded = filter_from_wire(wire)
    assert all(item in loaded for item in vector["items"])
    assert "BRIE" in loaded  # membership is by normalised key
