"""bincode 1.x (default options) encoding of ProducerMessage, byte-exact with Rust serde.

``encode(message) -> bytes`` (``encoder.py``) and ``decode(payload) -> message``
(``decoder.py``, strict: every malformation raises :class:`DecodeError`; ``decode_control``
for what a producer receives).
"""

from orchestrator_bridge.protocol.decoder import decode, decode_control
from orchestrator_bridge.protocol.encoder import encode

__all__ = ["decode", "decode_control", "encode"]
