"""Prompt building: the orchestrator's template plus a variety instruction."""

from __future__ import annotations

VARIETY_INSTRUCTION = (
    "Generate {batch_size} unique, specific examples. Focus on variety and avoid generic "
    "responses. Each entry should be on its own line."
)


def build_prompt(template: str, *, topic: str, batch_size: int) -> str:
    """Substitute ``{topic}`` and ``{batch_size}`` (nothing else) and add the instruction."""
    base = template.replace("{topic}", topic).replace("{batch_size}", str(batch_size))
    return f"{base}\n\n{VARIETY_INSTRUCTION.format(batch_size=batch_size)}"
