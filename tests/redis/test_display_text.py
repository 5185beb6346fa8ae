"""A provider's error text reaches Redis and ``producer status`` without control characters
(an escape sequence would drive the operator's terminal; a bidi override would reorder it)."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator_bridge.cli.status import render
from producer_tasks.printable import printable
from producer_tasks.state import outcomes
from producer_tasks.state.status import snapshot, write_bridge_status
from tests.conftest import make_runtime

pytestmark = [pytest.mark.usefixtures("eager"), pytest.mark.adversarial]
HOSTILE = "HTTP 500: \x1b[2J\x1b[31mred\x1b[0m\u202eevil\u0000\r\nnext line\x07" + "x" * 5000


def test_printable_keeps_text_and_drops_controls() -> None:
    assert printable("Gruyère AOP, 12 months") == "Gruyère AOP, 12 months"
    cleaned = printable(HOSTILE)
    assert "\x1b" not in cleaned and "\u202e" not in cleaned and "\x00" not in cleaned and "\n" not in cleaned
    assert cleaned.startswith("HTTP 500: [2J[31mred[0mevil  next line") and len(cleaned) == 300


def test_status_shows_a_hostile_error_without_its_controls(redis_url: str, installed_runtime: Any) -> None:
    rt, _ = make_runtime(redis_url)
    installed_runtime(rt)
    outcomes.record_outcome(rt.fleet, rt.settings, "mock", success=False, error=HOSTILE)
    stored = rt.fleet.read_health("mock").last_error
    assert stored == printable(HOSTILE)  # cleaned before it is stored
    write_bridge_status(rt.fleet, {"connected": 0, "last_error": HOSTILE})
    rt.fleet.redis.hset(rt.fleet.keys.health("mock"), "last_error", HOSTILE)  # as an older version wrote it
    text = render(snapshot(rt.fleet))
    assert "mock: last error: HTTP 500:" in text and "last error: HTTP 500:" in text.split("bridge:")[1]
    assert not [c for c in text if ord(c) < 32 and c != "\n"] and "\u202e" not in text
