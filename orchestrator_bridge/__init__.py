"""The orchestrator bridge: wire protocol, bridge process and reference orchestrator.

Importing the package is light: only the protocol (codec, framing, records and the shared
bloom format) is re-exported; the bridge and the orchestrator live in their own modules.
"""

from orchestrator_bridge.bloomwire import BloomFilter, BloomFilterWire, bit_indices, normalize
from orchestrator_bridge.codec import decode, encode
from orchestrator_bridge.errors import (
    BridgeError,
    ConnectionClosedError,
    DecodeError,
    EncodeError,
    FrameTooLargeError,
    ProtocolError,
)
from orchestrator_bridge.framing import DEFAULT_MAX_FRAME_BYTES, read_frame, write_frame
from orchestrator_bridge.messages import (
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
    "BloomFilter",
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
    "bit_indices",
    "decode",
    "encode",
    "normalize",
    "read_frame",
    "write_frame",
]
