"""What the decoder accepts per field, checked on the length prefix before the field's bytes
are read or its entries decoded (docs/protocol.md, "Limits"). Beyond a limit the frame is a
``DecodeError`` naming the field and the limit; the connection carries on.

The byte limits are the producer's character limits in UTF-8 (at most 4 bytes a character):
a value the producer would accept is never refused here, and one it would refuse costs no
more than its length prefix. Strings not listed (attributes, an ``Error`` reason, the bloom
filter) are bounded by the frame limit (``PRODUCER_MAX_FRAME_BYTES``) only.
"""

from __future__ import annotations

MAX_NAME_BYTES = 256  # a provider's name (a map key), producer_id, provider_used
MAX_TOPIC_BYTES = 4 * 10_000  # the producer refuses topics over 10,000 characters
MAX_PROMPT_BYTES = 4 * 100_000  # and prompts over 100,000 (PRODUCER_MAX_PROMPT_CHARS' ceiling)
MAX_MAP_ENTRIES = 1024  # provider_weights, provider_health: one entry per provider
