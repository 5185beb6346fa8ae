"""The resend window's trimming: by age and by bytes, oldest first."""

from __future__ import annotations

from orchestrator_bridge.resend import ResendWindow


def test_old_entries_are_trimmed_and_redis_is_told_where_to_cut() -> None:
    window = ResendWindow(max_age_ms=1000, max_bytes=10_000)
    window.add([("1000-0", 10), ("1500-0", 10), ("1500-1", 10), ("2600-0", 10)])
    assert window.trim(now_ms=2000) is None  # nothing older than a second yet
    assert window.trim(now_ms=2400) == "1000-1"  # XTRIM MINID keeps ids >= this
    assert window.trim(now_ms=2600) == "1500-2"
    assert [e for e, _ in window.entries] == ["2600-0"] and window.total_bytes == 10


def test_the_byte_bound_drops_the_oldest_first() -> None:
    window = ResendWindow(max_age_ms=60_000, max_bytes=25)
    window.add([("1-0", 10), ("2-0", 10), ("3-0", 10)])
    assert window.trim(now_ms=4) == "1-1"
    assert window.total_bytes == 20 and [e for e, _ in window.entries] == ["2-0", "3-0"]


def test_a_zero_window_is_off() -> None:
    assert not ResendWindow(max_age_ms=0, max_bytes=100).enabled
    assert ResendWindow(max_age_ms=1, max_bytes=1).enabled
