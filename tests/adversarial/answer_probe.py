"""One provider call in a process of its own, its peak RSS measured by the kernel: run by
``test_answers.py`` as ``python -m tests.adversarial.answer_probe API`` with the provider's
settings in the environment. It answers each line on stdin ("call") with a JSON line: the
peak RSS growth of that call over the RSS before it, and the error it raised, if any."""

from __future__ import annotations

import json
import os
import sys

from producer_tasks.errors import ProducerError
from producer_tasks.generation import providers
from producer_tasks.generation.providers import Clients, GenerationRequest
from producer_tasks.settings import load_settings
from tests.adversarial.peer import memory, reset_peak

REQUEST = GenerationRequest(
    prompt="List 10 cheeses", topic="cheese", temperature=0.7, max_tokens=200, batch_size=10
)


def main(api: str) -> None:
    clients = Clients(load_settings(dict(os.environ)))
    pid = os.getpid()
    for _ in sys.stdin:
        reset_peak(pid)
        before = memory(pid, "VmRSS")
        error = ""
        try:
            providers.generate(clients, api, REQUEST)
        except ProducerError as exc:
            error = f"{type(exc).__name__}: {exc}"
        growth = memory(pid, "VmHWM") - before
        print(json.dumps({"growth": growth, "error": error}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
