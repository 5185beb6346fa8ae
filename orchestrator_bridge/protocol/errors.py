"""Errors of the ``orchestrator_bridge`` package, rooted here so the protocol leaf needs
nothing outside itself (``orchestrator_bridge.errors`` re-exports them).

::

    BridgeError                      root of everything this package raises
    ├── ProtocolError                a frame or payload does not follow protocol.md
    │   ├── DecodeError              one payload is not exactly one ProducerMessage
    │   ├── EncodeError              a value cannot be represented on the wire
    │   └── FrameTooLargeError       a length prefix above the configured maximum
    └── ConnectionClosedError        the peer closed the connection (mid-frame or between)
"""

from __future__ import annotations


class BridgeError(Exception):
    """Root of every error raised by ``orchestrator_bridge``."""


class ProtocolError(BridgeError):
    """A frame or payload does not follow the wire protocol."""


class DecodeError(ProtocolError):
    """A payload is not exactly one valid ProducerMessage (that one frame is bad)."""


class EncodeError(ProtocolError):
    """A value cannot be encoded (out of range for its wire type)."""


class FrameTooLargeError(ProtocolError):
    """A length prefix exceeds the maximum frame size (the connection must be closed)."""

    def __init__(self, length: int, maximum: int) -> None:
        super().__init__(f"frame length {length} bytes exceeds the maximum of {maximum} bytes")
        self.length = length
        self.maximum = maximum


class ConnectionClosedError(BridgeError):
    """The peer closed the connection."""
