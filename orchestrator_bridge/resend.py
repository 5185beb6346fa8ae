"""The bridge's account of the resend window kept in Redis (``stream.window``).

Frames the kernel took are not frames the orchestrator read: batches written to the socket
stay in the window for ``PRODUCER_RESEND_WINDOW_S`` (at most ``PRODUCER_RESEND_WINDOW_BYTES``)
and are re-sent, oldest first, after every reconnect. The bridge is the window's only
writer, so it tracks ids and sizes here and tells Redis where to trim.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable


def _ms(entry_id: str) -> int:
    return int(entry_id.partition("-")[0])


def _after(entry_id: str) -> str:
    ms, _, seq = entry_id.partition("-")
    return f"{ms}-{int(seq or 0) + 1}"


class ResendWindow:
    def __init__(self, *, max_age_ms: int, max_bytes: int) -> None:
        self.max_age_ms = max_age_ms
        self.max_bytes = max_bytes
        self.entries: deque[tuple[str, int]] = deque()  # (window id, bytes), oldest first
        self.total_bytes = 0

    @property
    def enabled(self) -> bool:
        return self.max_age_ms > 0 and self.max_bytes > 0

    def reset(self, entries: Iterable[tuple[str, int]]) -> None:
        self.entries.clear()
        self.total_bytes = 0
        self.add(entries)

    def add(self, entries: Iterable[tuple[str, int]]) -> None:
        for entry_id, size in entries:
            self.entries.append((entry_id, size))
            self.total_bytes += size

    def trim(self, now_ms: int) -> str | None:
        """Forget what is too old or over the byte bound; the MINID to trim Redis to, if any."""
        cut = None
        while self.entries and (
            _ms(self.entries[0][0]) < now_ms - self.max_age_ms or self.total_bytes > self.max_bytes
        ):
            cut, size = self.entries.popleft()
            self.total_bytes -= size
        return None if cut is None else _after(cut)
