"""The built-in mock provider: no network, behaves like a model.

Attributes come from a synthetic vocabulary of ``vocabulary`` distinct names seeded by
the topic; draws are skewed towards the popular end (like a model's favourites), so
repeats across batches happen at a realistic rate. Answers are formatted in the styles
real models use (numbered, bulleted, bold with descriptions, with chatter around them),
so the parser is exercised too. Latency and failure rate are configurable.
"""

from __future__ import annotations

import hashlib
import random
import time

from producer_tasks.errors import ProviderUnavailableError
from producer_tasks.generation.prompt import FACETS_MARK, focus_of
from producer_tasks.records import LLMResponse

MODEL = "mock-1"
SKEW = 2.0  # index = V * u**SKEW: low indices ("popular" names) come up more often
_ONSETS = (
    "b",
    "br",
    "c",
    "ch",
    "d",
    "f",
    "g",
    "gr",
    "l",
    "m",
    "n",
    "p",
    "r",
    "s",
    "t",
    "v",
    "z",
    "st",
    "tr",
    "pl",
)
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ou", "ie", "ea", "oa")
_CODAS = ("", "n", "r", "l", "s", "x", "nd", "rt", "ll", "sh")
_QUALIFIERS = (
    "",
    "Reserve",
    "Classic",
    "Noir",
    "Royal",
    "Alpine",
    "Select",
    "Vintage",
    "Old",
    "Young",
    "Smoked",
    "Golden",
    "Wild",
    "Little",
    "Grand",
    "Blue",
)
_SYLLABLES = tuple(o + v + c for o in _ONSETS for v in _VOWELS for c in _CODAS)


def _seed(topic: str) -> int:
    return int.from_bytes(hashlib.blake2b(topic.encode(), digest_size=8).digest(), "little")


def attribute(topic: str, index: int) -> str:
    """The ``index``-th name of the topic's vocabulary (distinct for distinct indices)."""
    n = len(_SYLLABLES)
    seed = _seed(topic)
    # an affine permutation of the name space, different per topic
    space = n * n * len(_QUALIFIERS)
    step = (seed | 1) % space
    while _gcd(step, space) != 1:
        step += 2
    code = (index * step + (seed >> 17)) % space
    first, rest = divmod(code, n * len(_QUALIFIERS))
    second, qualifier = divmod(rest, len(_QUALIFIERS))
    name = (_SYLLABLES[first] + _SYLLABLES[second]).capitalize()
    return f"{name} {_QUALIFIERS[qualifier]}".strip()


def _gcd(a: int, b: int) -> int:
    while b:
        a, b = b, a % b
    return a


def draw(
    topic: str,
    count: int,
    *,
    vocabulary: int,
    rng: random.Random,
    skew: float = SKEW,
    facet: tuple[int, int] | None = None,
) -> list[str]:
    """``count`` names, skewed towards the popular end; with ``facet`` = (k, of n) only names
    of the k-th of n equal blocks of the vocabulary (in popularity order: unprompted, the
    first facets are most of what the model writes, the last ones it hardly ever reaches),
    skewed within the block (the facet's own favourites)."""
    if facet is None:
        return [attribute(topic, int(vocabulary * rng.random() ** skew)) for _ in range(count)]
    k, n = facet
    part = max(1, vocabulary // n)
    return [attribute(topic, k * part + int(part * rng.random() ** skew)) for _ in range(count)]


def facet_name(topic: str, k: int) -> str:
    """The k-th facet of the topic, as the mock names it."""
    return f"{attribute(topic + ' facets', k).split()[0]} {topic}"


def facet_names(topic: str, count: int) -> list[str]:
    """The topic's first ``count`` facets: what the mock answers when asked for them."""
    return [facet_name(topic, k) for k in range(count)]


def focused_facet(prompt: str, topic: str, facets: int) -> tuple[int, int] | None:
    """(k, of ``facets``) when the prompt focuses on the topic's k-th facet, else None."""
    focus = focus_of(prompt)
    if not focus:
        return None
    k = next((k for k in range(facets) if facet_name(topic, k) == focus), None)
    return None if k is None else (k, facets)


def answer(
    prompt: str,
    topic: str,
    batch_size: int,
    *,
    vocabulary: int,
    facets: int,
    rng: random.Random,
    skew: float = SKEW,
) -> list[str]:
    """What the mock model writes for a prompt: the topic's facets when asked for them;
    names of the facet the prompt focuses on (one of ``facets``); else names of the topic."""
    if FACETS_MARK in prompt and facets:
        return facet_names(topic, min(batch_size, facets))
    facet = focused_facet(prompt, topic, facets)
    return draw(topic, batch_size, vocabulary=vocabulary, rng=rng, skew=skew, facet=facet)


def render(items: list[str], topic: str, rng: random.Random) -> str:
    """Format like a chat model would, in one of several styles."""
    style = rng.randrange(4)
    if style == 0:
        body = "\n".join(f"{i}. {item}" for i, item in enumerate(items, 1))
        return f"Sure! Here are {len(items)} {topic}:\n\n{body}\n\nLet me know if you need more."
    if style == 1:
        return "\n".join(f"- {item}" for item in items)
    if style == 2:
        return "\n".join(
            f"{i}. **{item}** – a distinctive example of {topic}" for i, item in enumerate(items, 1)
        )
    return "\n".join(items)


def generate(
    *,
    prompt: str,
    topic: str,
    batch_size: int,
    latency_ms: float,
    failure_rate: float,
    vocabulary: int,
    facets: int = 0,
    rng: random.Random | None = None,
) -> LLMResponse:
    rng = rng or random.Random()
    started = time.perf_counter()
    if latency_ms > 0:
        time.sleep(latency_ms * rng.uniform(0.8, 1.2) / 1000)
    if rng.random() < failure_rate:
        raise ProviderUnavailableError("mock", "simulated failure")
    items = answer(prompt, topic, max(1, batch_size), vocabulary=vocabulary, facets=facets, rng=rng)
    content = render(items, topic, rng)
    return LLMResponse(
        content=content,
        prompt_tokens=max(1, len(prompt) // 4),
        completion_tokens=max(1, len(content) // 4),
        model=MODEL,
        response_time_ms=(time.perf_counter() - started) * 1000,
    )


def health_check(*, failure_rate: float, rng: random.Random | None = None) -> None:
    if (rng or random).random() < failure_rate:
        raise ProviderUnavailableError("mock", "simulated health-check failure")
