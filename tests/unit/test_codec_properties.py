"""Property tests of the codec: round trips, and arbitrary bytes raise only ProtocolError."""

from __future__ import annotations

import contextlib
import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator_bridge import (
    AttributeBatch,
    BloomFilterStats,
    DecodeError,
    Duration,
    EncodeError,
    ErrorStatus,
    GenerationConfig,
    GenerationMetadata,
    ProducerMessage,
    ProducerState,
    ProducerStatus,
    ProtocolError,
    ProviderHealth,
    ProviderStatus,
    StartTopic,
    Stop,
    Timestamp,
    UpdateConfiguration,
    decode,
    encode,
)

u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
text = st.text()
names = st.text(max_size=60)  # within the decoder's 256 bytes for a name (protocol/limits.py)
f32 = st.floats(width=32, allow_nan=False)
f64 = st.floats(allow_nan=False)
weights = st.dictionaries(names, f32, max_size=5)
statuses = st.sampled_from(list(ProviderStatus))
moments = st.builds(Timestamp, u64, st.integers(0, 999_999_999))
durations = st.builds(Duration, u64, st.integers(0, 999_999_999))
health = st.builds(ProviderHealth, u32, st.none() | moments, st.none() | moments, durations, statuses)
producer_status = st.sampled_from(list(ProducerState)) | st.builds(ErrorStatus, text)

messages: st.SearchStrategy[ProducerMessage] = st.one_of(
    st.builds(StartTopic, text, text, weights, st.builds(GenerationConfig, f32, u32, u32)),
    st.builds(UpdateConfiguration, st.none() | text, st.none() | weights, st.none() | st.binary()),
    st.just(Stop()),
    st.builds(
        AttributeBatch,
        names,
        st.lists(text, max_size=30).map(tuple),
        names,
        st.builds(GenerationMetadata, u64, u32, u32, u32, statuses),
        st.none() | st.builds(BloomFilterStats, u64, u64, f64, u64),
    ),
    st.builds(ProducerStatus, names, producer_status, st.dictionaries(names, health, max_size=4)),
)


@given(messages)
def test_round_trip(message: ProducerMessage) -> None:
    payload = encode(message)
    assert decode(payload) == message
    assert encode(decode(payload)) == payload


@given(st.floats(width=32))
def test_f32_edge_values_round_trip_bit_exact(value: float) -> None:
    message = StartTopic("t", "p", {"w": value}, GenerationConfig(value, 1, 1))
    payload = encode(message)
    decoded = decode(payload)
    assert isinstance(decoded, StartTopic)
    got = decoded.provider_weights["w"]
    assert struct.pack("<f", got) == struct.pack("<f", value) or (math.isnan(got) and math.isnan(value))


@settings(max_examples=500)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_protocol_errors(payload: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode(payload)


@settings(max_examples=300)
@given(messages, st.data())
def test_truncated_and_extended_payloads_are_rejected(message: ProducerMessage, data: st.DataObject) -> None:
    payload = encode(message)
    cut = data.draw(st.integers(0, len(payload) - 1))
    with pytest.raises(DecodeError):
        decode(payload[:cut])
    with pytest.raises(DecodeError, match="trailing"):
        decode(payload + data.draw(st.binary(min_size=1, max_size=8)))


def test_specific_malformations_have_clear_messages() -> None:
    with pytest.raises(DecodeError, match="unknown ProducerMessage variant 9"):
        decode(b"\x09\x00\x00\x00")
    bad_utf8 = b"\x00\x00\x00\x00" + struct.pack("<Q", 2) + b"\xff\xfe"
    with pytest.raises(DecodeError, match="invalid UTF-8 in topic"):
        decode(bad_utf8)
    huge_length = b"\x03\x00\x00\x00" + struct.pack("<Q", 200)
    with pytest.raises(DecodeError, match="larger than the 0 bytes left"):
        decode(huge_length)
    huge_count = b"\x03\x00\x00\x00" + struct.pack("<Q", 0) + struct.pack("<Q", 2**40)
    with pytest.raises(DecodeError, match="attributes"):
        decode(huge_count)
    bad_option = b"\x01\x00\x00\x00\x07"
    with pytest.raises(DecodeError, match="invalid Option tag 7"):
        decode(bad_option)
    with pytest.raises(DecodeError, match="unknown ProducerStatusType variant 6"):
        decode(b"\x04\x00\x00\x00" + struct.pack("<Q", 0) + b"\x06\x00\x00\x00")


def test_values_out_of_range_raise_encode_error() -> None:
    with pytest.raises(EncodeError):
        encode(StartTopic("t", "p", {"x": 1e39}, GenerationConfig(0.5, 1, 1)))
    with pytest.raises(EncodeError):
        encode(StartTopic("t", "p", {}, GenerationConfig(0.5, 2**32, 1)))
    with pytest.raises(EncodeError):
        encode("not a message")  # type: ignore[arg-type]
    with pytest.raises(EncodeError, match="invalid text"):
        encode(StartTopic("\ud800", "p", {}, GenerationConfig(0.5, 1, 1)))
