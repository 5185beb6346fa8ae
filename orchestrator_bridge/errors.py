"""Errors of the ``orchestrator_bridge`` package: one root, ``BridgeError``.

The tree is defined in the protocol leaf (``orchestrator_bridge.protocol.errors``) so
that the protocol imports nothing else; this module is where the rest of the package
takes them from. Errors of the fleet (``producer_tasks.errors.ProducerError``) that the
bridge meets are translated or reported where they enter.
"""

from orchestrator_bridge.protocol.errors import (
    BridgeError,
    ConnectionClosedError,
    DecodeError,
    EncodeError,
    FrameTooLargeError,
    ProtocolError,
)

__all__ = [
    "BridgeError",
    "ConnectionClosedError",
    "DecodeError",
    "EncodeError",
    "FrameTooLargeError",
    "ProtocolError",
]
