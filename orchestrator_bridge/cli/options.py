"""What ``producer run`` and ``producer orchestrator`` ask an orchestrator for."""

from __future__ import annotations

import argparse
from typing import Any

from orchestrator_bridge.orchestrator import DEFAULT_PROMPT, OrchestratorOptions


def job_options(args: argparse.Namespace, **extra: Any) -> OrchestratorOptions:
    """The topic options shared by ``run`` and ``orchestrator``."""
    return OrchestratorOptions(
        topic=args.topic or "",
        prompt=args.prompt or DEFAULT_PROMPT,
        weights=dict(args.weight),
        batch_size=args.batch_size,
        max_tokens=args.max_tokens,
        temperature=args.temperature,
        count=args.count,
        duration_s=args.duration,
        output=args.output,
        **extra,
    )
