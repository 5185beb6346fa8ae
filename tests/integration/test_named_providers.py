"""Named providers from a providers file, with real worker processes: two OpenAI-compatible
fake servers and the mock at weights 3:1:1, one server going down and coming back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from producer_tasks.records import LaneStatus
from producer_tasks.state.status import snapshot
from tests.conftest import write_providers_file
from tests.fakellm import API_KEY, FakeLLM
from tests.harness import wait_for
from tests.integration.test_fleet_integration import Harness

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]
WEIGHTS = {"vllm-a": 3.0, "vllm-b": 1.0, "mock": 1.0}


class Named(Harness):
    def __init__(self, redis_url: str, a: FakeLLM, b: FakeLLM, log_dir: Path) -> None:
        shared = {"kind": "openai-compatible", "api_key_env": "FAKE_VLLM_KEY"}
        file_env = write_providers_file(
            log_dir / "providers.toml",
            {
                "vllm-a": {**shared, "base_url": f"{a.url}/v1", "model": "model-a"},
                "vllm-b": {**shared, "base_url": f"{b.url}/v1", "model": "model-b"},
            },
        )
        # only the named providers and the mock: no OPENAI_*/ANTHROPIC_*
        super().__init__(redis_url, a, log_dir, providers={"FAKE_VLLM_KEY": API_KEY, **file_env})
        self.a, self.b = a, b

    def calls(self) -> dict[str, int]:
        """Generation calls each provider received (the servers' own counts; the mock's stats)."""
        return {
            "vllm-a": self.a.count("openai", kind="/chat/completions"),
            "vllm-b": self.b.count("openai", kind="/chat/completions"),
            "mock": self.fleet.read_stats("mock").total_requests,
        }


    def running_on(self, provider: str) -> list[int]:
        """Lanes whose cycle claimed ``provider`` and has not recorded its outcome yet."""
        lanes = self.fleet.view().lanes
        return [i for i, lane in lanes.items() if lane.provider == provider and lane.status is LaneStatus.RUNNING]


def shares(before: dict[str, int], after: dict[str, int]) -> tuple[dict[str, float], int]:
    delta = {p: after[p] - before[p] for p in after}
    total = sum(delta.values())
    return {p: n / max(total, 1) for p, n in delta.items()}, total


@pytest.fixture
def named(redis_url: str, tmp_path: Path) -> Iterator[Named]:
    a, b = FakeLLM().start(), FakeLLM().start()
    for fake in (a, b):
        fake.set("openai", latency_ms=20, vocabulary=10_000_000)
    made = Named(redis_url, a, b, tmp_path)
    try:
        yield made
    finally:
        made.processes.stop_all()
        a.stop()
        b.stop()
        for name in ("w1", "beat"):
            text = made.processes.log(name)
            if "Traceback" in text:
                print(f"--- {name} log ---\n{text[-4000:]}")


def test_three_named_providers_share_by_weight_and_one_going_down_moves_its_share(named: Named) -> None:
    named.processes.worker("w1", "vllm-a,vllm-b,mock", concurrency=16)
    named.processes.beat()
    named.wait_workers(1)
    named.start(WEIGHTS, concurrency=10)
    wait_for(lambda: sum(named.calls().values()) >= 20, timeout_s=60, what="traffic")

    # 1. 3:1:1 over 1,000 cycles: within 5 points of 60/20/20 (3+ standard deviations)
    start = named.calls()
    wait_for(lambda: shares(start, named.calls())[1] >= 1000, timeout_s=120, what="1,000 cycles")
    share, total = shares(start, named.calls())
    print(f"3:1:1 over {total} cycles: {share}")
    assert abs(share["vllm-a"] - 0.6) < 0.05 and abs(share["vllm-b"] - 0.2) < 0.05, (share, total)
    assert abs(share["mock"] - 0.2) < 0.05, (share, total)
    assert {r.body["model"] for r in named.a.requests if "/chat" in r.path} == {"model-a"}
    assert {r.body["model"] for r in named.b.requests if "/chat" in r.path} == {"model-b"}
    status = snapshot(named.fleet)
    assert set(WEIGHTS) <= set(status.providers) and status.providers["vllm-b"].served_by_workers == 1

    # 2. vllm-b answers 500: Unhealthy after 3 failures, then no generation call reaches it;
    #    vllm-a and the mock share its cycles 3:1
    named.b.set("openai", mode="status", status=500, latency_ms=20)
    wait_for(lambda: named.fleet.read_health("vllm-b").status == "unhealthy", timeout_s=30, what="unhealthy")
    # calls claimed before the mark may still be on their way; no claim on it succeeds after
    wait_for(lambda: not named.running_on("vllm-b"), timeout_s=10, what="calls before the mark ended")
    down = named.calls()
    wait_for(lambda: shares(down, named.calls())[1] >= 600, timeout_s=120, what="600 cycles while down")
    share, total = shares(down, named.calls())
    print(f"vllm-b down, {total} cycles: {share}")
    assert share["vllm-b"] == 0.0, (share, total)  # health checks (GET /models) are not counted
    assert abs(share["vllm-a"] - 0.75) < 0.06, (share, total)
    assert named.b.count("openai", kind="/models/model-b") >= 1  # beat probed it

    # 3. it recovers: a health check makes it Healthy and it takes its share again
    named.b.set("openai", latency_ms=20, vocabulary=10_000_000)
    wait_for(lambda: named.fleet.read_health("vllm-b").status == "healthy", timeout_s=30, what="recovered")
    up = named.calls()
    wait_for(lambda: shares(up, named.calls())[1] >= 600, timeout_s=120, what="600 cycles after recovery")
    share, total = shares(up, named.calls())
    print(f"vllm-b back, {total} cycles: {share}")
    assert abs(share["vllm-b"] - 0.2) < 0.06 and abs(share["vllm-a"] - 0.6) < 0.07, (share, total)
