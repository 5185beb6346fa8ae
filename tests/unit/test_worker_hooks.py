"""Worker hooks that need no Redis."""

from __future__ import annotations

import gc
import sys

from producer_tasks.settings import load_settings
from producer_tasks.worker.signals import GC_THRESHOLDS, _freeze_startup_objects


def test_a_ready_worker_imports_its_sdks_and_sets_the_collector_for_many_calls_in_flight() -> None:
    before = gc.get_threshold()
    try:
        settings = load_settings({"OPENAI_API_KEY": "sk-test"})
        _freeze_startup_objects(settings, ["openai", "mock"])
        assert "openai" in sys.modules  # imported before the freeze, not by the first call
        assert gc.get_freeze_count() > 10_000
        assert gc.get_threshold() == GC_THRESHOLDS
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
