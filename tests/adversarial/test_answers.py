"""A worker's memory for one oversized model answer, measured by the kernel (RSS) in a
process of its own, through the official SDK over real HTTP (issue 30): at most the byte cap
and 20 MB over the process at rest, for a 130 MB answer."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.adversarial.peer import MB
from tests.conftest import provider_env
from tests.fakellm import FakeLLM
from tests.harness import ROOT

pytestmark = pytest.mark.adversarial
CAP = 1 * MB


@pytest.mark.parametrize("api", ["openai", "anthropic"])
def test_a_130_mb_answer_costs_a_process_at_most_the_cap_and_20_mb(api: str, fake_llm: FakeLLM) -> None:
    env = provider_env(fake_llm, PRODUCER_MAX_RESPONSE_BYTES=str(CAP), PRODUCER_REQUEST_TIMEOUT_S="30")
    probe = subprocess.Popen(
        [sys.executable, "-m", "tests.adversarial.answer_probe", api],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert probe.stdin is not None and probe.stdout is not None

    def call() -> dict[str, object]:
        assert probe.stdin is not None and probe.stdout is not None
        probe.stdin.write("call\n")
        probe.stdin.flush()
        return dict(json.loads(probe.stdout.readline()))

    try:
        for _ in range(3):  # the SDK imported, its client and connection pool made, warm
            assert call()["error"] == ""
        fake_llm.set(api, mode="huge", size=130 * MB)
        huge = call()
        fake_llm.set(api)
        after = call()
    finally:
        probe.stdin.close()
        probe.wait(timeout=30)
        probe.stdout.close()
    assert "PRODUCER_MAX_RESPONSE_BYTES" in str(huge["error"])
    growth = int(str(huge["growth"]))
    assert growth <= CAP + 20 * MB, f"{growth / MB:.1f} MB"
    assert after["error"] == ""  # and the next answer is read as usual
