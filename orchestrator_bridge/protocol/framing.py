"""Length-prefixed framing: a 4-byte big-endian payload length, then the payload.

The length is checked against the maximum *before* the body is read or allocated.
"""

from __future__ import annotations

import asyncio

from orchestrator_bridge.protocol import codec
from orchestrator_bridge.protocol.errors import ConnectionClosedError, FrameTooLargeError
from orchestrator_bridge.protocol.messages import ProducerMessage

DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024
PREFIX_BYTES = 4


def frame(payload: bytes) -> bytes:
    """Prefix a payload with its big-endian u32 length."""
    return len(payload).to_bytes(PREFIX_BYTES, "big") + payload


async def read_frame(
    reader: asyncio.StreamReader, *, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
) -> bytes:
    """Read one frame's payload.

    Raises ConnectionClosedError on EOF and FrameTooLargeError (without reading the body)
    when the announced length is above ``max_frame_bytes``.
    """
    try:
        prefix = await reader.readexactly(PREFIX_BYTES)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise ConnectionClosedError("connection closed inside a length prefix") from exc
        raise ConnectionClosedError("connection closed by peer") from exc
    length = int.from_bytes(prefix, "big")
    if length > max_frame_bytes:
        raise FrameTooLargeError(length, max_frame_bytes)
    try:
        return await reader.readexactly(length)
    except asyncio.IncompleteReadError as exc:
        raise ConnectionClosedError(
            f"connection closed after {len(exc.partial)} of {length} payload bytes"
        ) from exc


async def write_frame(writer: asyncio.StreamWriter, payload: bytes) -> None:
    """Write one frame and wait until the transport has taken it."""
    writer.write(frame(payload))
    await writer.drain()


async def write_message(writer: asyncio.StreamWriter, message: ProducerMessage) -> None:
    await write_frame(writer, codec.encode(message))
