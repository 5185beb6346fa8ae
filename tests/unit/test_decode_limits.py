"""The decoder's per-field limits (protocol/limits.py, docs/protocol.md "Limits"): each is
checked on the length prefix, so a frame beyond it costs nothing to refuse, and each error
names the field and the limit without quoting the input."""

from __future__ import annotations

import struct
import tracemalloc

import pytest

from orchestrator_bridge import (
    AttributeBatch,
    DecodeError,
    ErrorStatus,
    GenerationConfig,
    GenerationMetadata,
    ProducerStatus,
    ProviderStatus,
    StartTopic,
    Stop,
    UpdateConfiguration,
    decode,
    encode,
)
from orchestrator_bridge.protocol import limits
from orchestrator_bridge.protocol.codec import decode_control

pytestmark = pytest.mark.adversarial
CONFIG = GenerationConfig(0.5, 100, 10)  # exact in f32
START = b"\x00\x00\x00\x00"
U64 = struct.Struct("<Q")


def text(value: bytes) -> bytes:
    """A bincode String (or byte string): its u64 length, then the bytes."""
    return U64.pack(len(value)) + value


def test_values_at_each_limit_are_accepted() -> None:
    name = "n" * limits.MAX_NAME_BYTES
    weights = {f"{n:04}" + "é" * 100: 1.0 for n in range(limits.MAX_MAP_ENTRIES)}  # 204 bytes each
    topic, prompt = "€" * (limits.MAX_TOPIC_BYTES // 3), "p" * limits.MAX_PROMPT_BYTES
    for message in (
        StartTopic(topic, prompt, weights, CONFIG),
        UpdateConfiguration(prompt, {name: 1.0}, None),
        AttributeBatch(
            name, ("a" * 100_000,), name, GenerationMetadata(1, 2, 1, 1, ProviderStatus.HEALTHY), None
        ),
        ProducerStatus(name, ErrorStatus("r" * 100_000), {}),
    ):
        assert decode(encode(message)) == message


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (
            START + U64.pack(limits.MAX_TOPIC_BYTES + 1),
            f"topic has {limits.MAX_TOPIC_BYTES + 1} bytes, more than",
        ),
        (
            START + text(b"t") + U64.pack(2**62),
            f"prompt has {2**62} bytes, more than the {limits.MAX_PROMPT_BYTES}",
        ),
        (
            START + text(b"t") + text(b"p") + U64.pack(limits.MAX_MAP_ENTRIES + 1),
            f"provider_weights has {limits.MAX_MAP_ENTRIES + 1} entries, more than the {limits.MAX_MAP_ENTRIES}",
        ),
        (
            START + text(b"t") + text(b"p") + U64.pack(1) + text(b"x" * 300) + b"\x00\x00\x80\x3f",
            "provider_weights key has 300 bytes, more than the 256 allowed",
        ),
        (b"\x01\x00\x00\x00\x01" + U64.pack(limits.MAX_PROMPT_BYTES + 1), "prompt has"),
        (b"\x03\x00\x00\x00" + U64.pack(257), "producer_id has 257 bytes, more than the 256 allowed"),
        (b"\x04\x00\x00\x00" + text(b"p") + b"\x02\x00\x00\x00" + U64.pack(2**40), "provider_health has"),
    ],
)
def test_a_field_beyond_its_limit_is_refused_from_its_length(payload: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match="more than the") as raised:
        decode(payload + b"\x00" * 64)
    assert message in str(raised.value)
    assert len(str(raised.value)) < 120  # names the field and the limit, quotes nothing


def test_1_million_unknown_provider_names_cost_nothing_to_refuse() -> None:
    """The issue's probe: a StartTopic of 16.6 MB with 1.04 M provider names."""
    entry = text(b"provider-x") + struct.pack("<f", 1.0)
    body = START + text(b"cheese") + text(b"p") + U64.pack(1_040_000) + entry * 1_040_000
    body += struct.pack("<fII", 0.7, 100, 10)
    tracemalloc.start()
    try:
        with pytest.raises(DecodeError, match="provider_weights has 1040000 entries"):
            decode_control(body)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1024 * 1024, peak  # not one entry decoded


def test_a_producer_refuses_the_messages_producers_send_without_decoding_them() -> None:
    status = encode(ProducerStatus("p", ErrorStatus("x" * 5_000_000), {}))
    batch = encode(
        AttributeBatch(
            "p", ("a",) * 500_000, "mock", GenerationMetadata(1, 2, 1, 1, ProviderStatus.HEALTHY), None
        )
    )
    for payload, name in ((status, "ProducerStatus"), (batch, "AttributeBatch")):
        tracemalloc.start()
        try:
            with pytest.raises(DecodeError, match=f"{name} is sent by producers, not to them"):
                decode_control(payload)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 64 * 1024, (name, peak)
        assert decode(payload) is not None  # the orchestrator's side still decodes them
    assert decode_control(encode(Stop())) == Stop()
