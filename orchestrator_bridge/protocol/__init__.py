"""The wire protocol of docs/protocol.md: a leaf package that imports nothing else of ours.

Typed records (``messages``), the bincode codec (``encode``/``decode``), length-prefixed
framing, the wire form of the bloom filter and the protocol's errors.
"""

from orchestrator_bridge.protocol.bloomwire import BloomFilterWire
from orchestrator_bridge.protocol.codec import decode, encode
from orchestrator_bridge.protocol.errors import (
    BridgeError,
    ConnectionClosedError,
    DecodeError,
    EncodeError,
    FrameTooLargeError,
    ProtocolError,
)
from orchestrator_bridge.protocol.framing import DEFAULT_MAX_FRAME_BYTES, frame, read_frame, write_frame
from orchestrator_bridge.protocol.messages import (
    AttributeBatch,
    BloomFilterStats,
    Duration,
    ErrorStatus,
    GenerationConfig,
    GenerationMetadata,
    ProducerMessage,
    ProducerState,
    ProducerStatus,
    ProducerStatusType,
    ProviderHealth,
    ProviderStatus,
    StartTopic,
    Stop,
    Timestamp,
    UpdateConfiguration,
)

__all__ = [
    "DEFAULT_MAX_FRAME_BYTES",
    "AttributeBatch",
    "BloomFilterStats",
    "BloomFilterWire",
    "BridgeError",
    "ConnectionClosedError",
    "DecodeError",
    "Duration",
    "EncodeError",
    "ErrorStatus",
    "FrameTooLargeError",
    "GenerationConfig",
    "GenerationMetadata",
    "ProducerMessage",
    "ProducerState",
    "ProducerStatus",
    "ProducerStatusType",
    "ProtocolError",
    "ProviderHealth",
    "ProviderStatus",
    "StartTopic",
    "Stop",
    "Timestamp",
    "UpdateConfiguration",
    "decode",
    "encode",
    "frame",
    "read_frame",
    "write_frame",
]
