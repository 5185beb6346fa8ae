"""Worker hooks that need no Redis."""

from __future__ import annotations

import gc
import sys

from producer_tasks.settings import load_settings
from producer_tasks.worker.signals import GC_THRESHOLDS, freeze_startup_objects, fresh_runtime_after_fork
from producer_tasks.worker.transport import SETTLED, SettledTags


def test_a_ready_worker_imports_its_sdks_and_sets_the_collector_for_many_calls_in_flight() -> None:
    before = gc.get_threshold()
    try:
        settings = load_settings({"OPENAI_API_KEY": "sk-test"})
        freeze_startup_objects(settings, ["openai", "mock"])
        assert "openai" in sys.modules  # imported before the freeze, not by the first call
        assert gc.get_freeze_count() > 10_000
        assert gc.get_threshold() == GC_THRESHOLDS
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_settled_tags_are_taken_once_bounded_and_not_kept_by_a_pool_child() -> None:
    tags = SettledTags(limit=2)
    for tag in ("a", "b", "c"):
        tags.add(tag)
    assert not tags.take("a")  # the oldest was forgotten: its ack removes the entry again
    assert tags.take("b") and not tags.take("b") and tags.take("c")
    try:
        fresh_runtime_after_fork()  # what a prefork pool's child runs: its parent acknowledges
        SETTLED.add("d")
        assert not SETTLED.take("d")
    finally:
        SETTLED.kept = True
