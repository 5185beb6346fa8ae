"""Framing: big-endian length prefix, maximum checked before the body is read."""

from __future__ import annotations

import asyncio
import contextlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator_bridge import (
    ConnectionClosedError,
    FrameTooLargeError,
    ProtocolError,
    Stop,
    decode,
    encode,
    read_frame,
)
from orchestrator_bridge.protocol.framing import frame


def feed(data: bytes, *, eof: bool = True) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    if eof:
        reader.feed_eof()
    return reader


def test_frame_prefix_is_big_endian() -> None:
    assert frame(encode(Stop())) == b"\x00\x00\x00\x04\x02\x00\x00\x00"


async def test_reads_consecutive_frames() -> None:
    reader = feed(frame(b"abc") + frame(b"") + frame(encode(Stop())))
    assert await read_frame(reader) == b"abc"
    assert await read_frame(reader) == b""
    assert decode(await read_frame(reader)) == Stop()
    with pytest.raises(ConnectionClosedError, match="closed by peer"):
        await read_frame(reader)


async def test_oversized_length_is_rejected_without_reading_the_body() -> None:
    # A 2 GiB announcement with no body at all, and the stream left open: if the reader
    # tried to read (or allocate) the body it would block or fail differently.
    reader = feed(struct.pack(">I", 2**31) + b"tail", eof=False)
    with pytest.raises(FrameTooLargeError) as info:
        await asyncio.wait_for(read_frame(reader, max_frame_bytes=1024), timeout=5)
    assert info.value.length == 2**31
    assert "exceeds the maximum of 1024 bytes" in str(info.value)
    assert await reader.readexactly(4) == b"tail"  # the body was not consumed


async def test_truncated_body_and_prefix_are_connection_errors() -> None:
    with pytest.raises(ConnectionClosedError, match="after 2 of 10 payload bytes"):
        await read_frame(feed(struct.pack(">I", 10) + b"ab"))
    with pytest.raises(ConnectionClosedError, match="inside a length prefix"):
        await read_frame(feed(b"\x00\x00"))


@settings(max_examples=300)
@given(st.binary(max_size=64))
def test_fuzz_reader_raises_only_bridge_errors(data: bytes) -> None:
    async def run() -> None:
        reader = feed(data)
        while True:
            try:
                payload = await read_frame(reader, max_frame_bytes=32)
            except (ConnectionClosedError, FrameTooLargeError):
                return
            with contextlib.suppress(ProtocolError):
                decode(payload)

    asyncio.run(run())
