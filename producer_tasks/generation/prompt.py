"""Prompt building: the orchestrator's template, a variety instruction, and (novelty
strategy) one facet of the topic to focus on and a bounded list of what is already known,
to steer the model away from it. Once per topic the model is asked for the facets
(``facets_prompt``)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

from producer_tasks.errors import ConfigurationError

VARIETY_INSTRUCTION = (
    "Generate {batch_size} unique, specific examples. Focus on variety and avoid generic "
    "responses. Each entry should be on its own line."
)
AVOID_HEADER = "Already known, do not repeat any of these: "
AVOID_SEPARATOR = "; "
FOCUS_HEADER = "This time, only this part of the topic: "
FACETS_MARK = "distinct sub-categories of"  # what tells a (mock) model it is asked for facets
FACETS_INSTRUCTION = (
    "List {count} " + FACETS_MARK + " {topic} (by region, kind, style, period or origin) "
    "that together cover all of it, from the best known to the most obscure. Only the names, one per line."
)
MOST_REPEATED_SHARE = 0.8  # of the avoid budget; the rest rotates through the other known items


PLACEHOLDER = re.compile(r"\{(topic|batch_size)\}")


def filled_length(template: str, *, topic: str, batch_size: int, steering_chars: int = 0) -> int:
    """The length of ``build_prompt``'s answer, counted without building it (a template of
    thousands of ``{topic}`` with a long topic would be megabytes), plus ``steering_chars``
    for a facet and an avoid list."""
    values = {"topic": len(topic), "batch_size": len(str(batch_size))}
    grown = sum(values[name] - len(name) - 2 for name in PLACEHOLDER.findall(template))
    return len(template) + grown + 2 + len(VARIETY_INSTRUCTION.format(batch_size=batch_size)) + steering_chars


def steering_chars(*, facet_chars: int, avoid_tokens: int) -> int:
    """The most a facet line (of ``facet_chars``; 0: none) and an avoid list of
    ``avoid_tokens`` add to a prompt."""
    avoid = 2 + len(AVOID_HEADER) + 3 * avoid_tokens if avoid_tokens else 0
    return (1 + len(FOCUS_HEADER) + facet_chars + 1 if facet_chars else 0) + avoid


def build_prompt(
    template: str,
    *,
    topic: str,
    batch_size: int,
    avoid: str = "",
    facet: str = "",
    max_chars: int | None = None,
) -> str:
    """Substitute ``{topic}`` and ``{batch_size}`` in one pass (nothing else; a topic's own
    braces stay as they are), add the instruction, the facet to focus on and the avoid section
    (``avoid_section``), if any. Longer than ``max_chars``: ConfigurationError, before it is built."""
    if max_chars is not None:
        length = filled_length(template, topic=topic, batch_size=batch_size)
        length += (1 + len(FOCUS_HEADER) + len(facet) + 1 if facet else 0) + (2 + len(avoid) if avoid else 0)
        if length > max_chars:
            raise ConfigurationError(
                f"the prompt would be {length} characters, at most {max_chars} (PRODUCER_MAX_PROMPT_CHARS)"
            )
    values = {"topic": topic, "batch_size": str(batch_size)}
    base = PLACEHOLDER.sub(lambda found: values[found.group(1)], template)
    prompt = f"{base}\n\n{VARIETY_INSTRUCTION.format(batch_size=batch_size)}"
    if facet:
        prompt = f"{prompt}\n{FOCUS_HEADER}{facet}."
    return f"{prompt}\n\n{avoid}" if avoid else prompt


def facets_prompt(topic: str, count: int) -> str:
    """The once-per-topic request for the topic's facets."""
    return FACETS_INSTRUCTION.format(count=count, topic=topic)


def focus_of(prompt: str) -> str | None:
    """The facet a prompt focuses on (what a model reads), or None."""
    if FOCUS_HEADER not in prompt:
        return None
    line = prompt[prompt.index(FOCUS_HEADER) + len(FOCUS_HEADER) :].split("\n", 1)[0]
    return line.removesuffix(".")


def estimate_tokens(text: str) -> int:
    """A generous token count (3 characters a token; real tokenizers average about 4)."""
    return math.ceil(len(text) / 3)


def avoid_section(most_repeated: Iterable[str], others: Iterable[str], *, budget_tokens: int) -> str:
    """ "Already known, do not repeat any of these: a; b; …" within ``budget_tokens``
    (``estimate_tokens``): the most repeated items first (the model's favourites, what it
    would write next), up to ``MOST_REPEATED_SHARE`` of the budget, then the others; ""
    when nothing fits."""
    header = estimate_tokens(AVOID_HEADER)
    if budget_tokens <= header:
        return ""
    chosen: list[str] = []
    seen: set[str] = set()
    used = len(AVOID_HEADER)
    limit = budget_tokens * 3  # in characters, as estimate_tokens counts them
    for items, share in ((most_repeated, MOST_REPEATED_SHARE), (others, 1.0)):
        for item in items:
            text = " ".join(item.replace(AVOID_SEPARATOR.strip(), ",").split())
            cost = len(text) + (len(AVOID_SEPARATOR) if chosen else 0)
            if not text or text in seen:
                continue
            if used + cost > limit * share:
                break
            chosen.append(text)
            seen.add(text)
            used += cost
    return AVOID_HEADER + AVOID_SEPARATOR.join(chosen) if chosen else ""
