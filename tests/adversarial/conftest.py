"""Every test here is one bound of issue 30 probed from outside, on real processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.adversarial.peer import BridgeProcess


@pytest.fixture
def bridge(redis_url: str, tmp_path: Path) -> Iterator[BridgeProcess]:
    made = BridgeProcess.start(tmp_path, redis_url, PRODUCER_STATUS_INTERVAL_S="0.2")
    try:
        yield made
    finally:
        made.stop()
