"""Hostile frames from the orchestrator against a real bridge process (issue 30): each within
the frame limit, each costing the bridge at most 50 MB of RSS over its size at rest (the
kernel's peak, reset before the frame), answered by an Error that names the limit and quotes
at most 64 characters, in one log line, with nothing changed and the connection still
serving."""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest

from orchestrator_bridge import (
    AttributeBatch,
    ErrorStatus,
    GenerationConfig,
    GenerationMetadata,
    ProducerState,
    ProducerStatus,
    ProviderStatus,
    StartTopic,
    UpdateConfiguration,
    encode,
)
from orchestrator_bridge.protocol.bloomwire import BloomFilterWire
from producer_tasks.settings import load_settings
from tests.adversarial.peer import MB, BridgeProcess, memory, reset_peak
from tests.conftest import open_fleet
from tests.unit.test_decode_limits import U64, text

CONFIG = GenerationConfig(0.5, 100, 10)
START = StartTopic("cheese", "List {batch_size} {topic}", {"mock": 1.0}, CONFIG)
BUDGET = 50 * MB
pytestmark = pytest.mark.adversarial


def million_unknown_names() -> bytes:
    """The issue's probe: a 16.6 MB StartTopic weighting 1.04 M providers nobody has."""
    alphabet = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"
    weight = struct.pack("<f", 1.0)
    entries = b"".join(
        text(bytes(alphabet[(n >> shift) & 63] for shift in (18, 12, 6, 0))) + weight
        for n in range(1_040_000)
    )
    head = b"\x00\x00\x00\x00" + text(b"cheese") + text(b"List {topic}") + U64.pack(1_040_000)
    return head + entries + struct.pack("<fII", 0.5, 100, 10)


def two_mib_name() -> bytes:
    return encode(StartTopic("cheese", "List {topic}", {"x" * (2 * MB): 1.0, "mock": 1.0}, CONFIG))


def huge_status() -> bytes:
    return encode(ProducerStatus("orchestrator", ErrorStatus("e" * (14 * MB)), {}))


def huge_batch() -> bytes:
    meta = GenerationMetadata(1, 2, 1, 1, ProviderStatus.HEALTHY)
    return encode(AttributeBatch("p", ("attribute",) * 800_000, "mock", meta, None))


def huge_topic() -> bytes:
    return encode(StartTopic("t" * (15 * MB), "List {topic}", {"mock": 1.0}, CONFIG))


def huge_prompt_update() -> bytes:
    return encode(UpdateConfiguration("{topic} " * (MB + MB // 2), None, None))


def garbage_bloom_filter() -> bytes:
    return encode(UpdateConfiguration(None, None, b"\x01" + b"\xff" * (15 * MB)))


def bloom_filter_of_15_mb() -> bytes:
    """A valid filter of 15 MB (126 M bits): loaded, as the orchestrator means it."""
    size = 15 * MB
    wire = BloomFilterWire(version=1, num_bits=size * 8, num_hashes=7, items=0, bits=bytes(size))
    return encode(UpdateConfiguration(None, None, wire.encode()))


PROBES: list[tuple[Callable[[], bytes], str | None]] = [
    (million_unknown_names, "provider_weights has 1040000 entries, more than the 1024 allowed"),
    (two_mib_name, "provider_weights key has 2097152 bytes, more than the 256 allowed"),
    (huge_status, "ProducerStatus is sent by producers, not to them"),
    (huge_batch, "AttributeBatch is sent by producers, not to them"),
    (huge_topic, "topic has 15728640 bytes, more than the 40000 allowed"),
    (huge_prompt_update, "prompt has 12582912 bytes, more than the 400000 allowed"),
    (garbage_bloom_filter, "invalid bloom filter"),
    (bloom_filter_of_15_mb, None),  # accepted
]


@pytest.mark.parametrize(("make", "error"), PROBES, ids=[make.__name__ for make, _ in PROBES])
def test_a_hostile_frame_costs_at_most_50_mb_and_changes_nothing(
    bridge: BridgeProcess, redis_url: str, make: Callable[[], bytes], error: str | None
) -> None:
    peer = bridge.peer
    peer.status()
    peer.send(encode(START))
    peer.status(ProducerState.RUNNING)
    fleet = open_fleet(load_settings({"REDIS_URL": redis_url}))
    before = fleet.read_state()
    payload = make()
    assert len(payload) <= 16 * MB  # within the frame limit: the bridge reads all of it
    lines = len(bridge.log_lines())
    reset_peak(bridge.pid)
    at_rest = memory(bridge.pid, "VmRSS")
    peer.send(payload)
    if error is None:
        peer.status(ProducerState.RUNNING)
        bridge.wait_log("orchestrator: UpdateConfiguration", after=lines)
    else:
        answer = peer.status(ErrorStatus)
        assert isinstance(answer.status, ErrorStatus) and error in answer.status.reason
        assert len(answer.status.reason) < 200, len(answer.status.reason)
    growth = memory(bridge.pid, "VmHWM") - at_rest
    assert growth <= BUDGET, f"{growth / MB:.1f} MB for a {len(payload) / MB:.1f} MB frame"
    said = [line for line in bridge.log_lines()[lines:] if " WARNING " in line or " ERROR " in line]
    if error is not None:
        assert len(said) == 1 and len(said[0]) < 400, said[:3]  # one line about the frame
        after = fleet.read_state()
        assert (after.topic, after.epoch, after.weights, after.prompt) == (
            before.topic,
            before.epoch,
            before.weights,
            before.prompt,
        )
    peer.send(encode(START))  # the same connection keeps serving
    peer.status(ProducerState.RUNNING)
    assert bridge.alive()


def test_unknown_provider_names_are_one_warning_line_quoting_64_characters(bridge: BridgeProcess) -> None:
    peer = bridge.peer
    peer.status()
    names = {f"{n:04}" + "n" * 250: 1.0 for n in range(1_023)}  # 1,024 entries: the limit
    lines = len(bridge.log_lines())
    peer.send(encode(StartTopic("cheese", "List {topic}", names | {"mock": 1.0}, CONFIG)))
    peer.status(ProducerState.RUNNING)  # accepted: the names it does not have are ignored
    bridge.wait_log("orchestrator: StartTopic", after=lines)
    warnings = [line for line in bridge.log_lines()[lines:] if "not configured" in line]
    assert len(warnings) == 1, warnings
    assert "weights ignored for 1023 provider(s)" in warnings[0] and "and 1018 more" in warnings[0]
    assert "… (254 characters)" in warnings[0] and len(warnings[0]) < 800
