"""Turn a model's answer into candidate attributes.

``- item`` and ``1. item`` lines are list items, not noise: the list markers are
stripped and the items kept. Also: markdown emphasis and quotes are removed, a
``**Name** – description`` line keeps the name only, preambles ("Sure! Here are 10 …:")
and closings ("Let me know if …") are dropped, a JSON array answer is accepted, items are
bounded in length, de-duplicated by the protocol's normalisation and truncated to the
batch size. Work is bounded: only the first ``max_response_chars`` characters are read.
Parsing never raises on any text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

from producer_tasks.bloomhash import normalize

DEFAULT_MAX_RESPONSE_CHARS = 100_000
DEFAULT_MAX_ATTRIBUTE_CHARS = 200
MIN_ATTRIBUTE_CHARS = 2

_LIST_MARKER = re.compile(
    r"^\s*(?:"
    r"\(?\d{1,4}\s*[.)\]:]|"  # 1.  1)  (1)  1]  1:
    r"\d{1,4}\s+-(?=\s)|"  # 1 - item
    r"[a-z]\)|"  # a)
    r"[-*+•·▪‣◦–—](?=\s)"  # bullets (followed by a space: "**Bold**" is no bullet)
    r")\s*"
)
_HEADING = re.compile(r"^\s*#{1,6}\s")
_MARKUP = re.compile(r"^\s*</?[a-zA-Z!][^>]*>")
_FENCE = re.compile(r"^\s*(```|~~~)")
_BOLD_LEAD = re.compile(r"^(\*\*|__)(.+?)\1")
_DESCRIPTION_SPLIT = re.compile(r"\s+[–—-]\s+|:\s+|\s+\(|\s*[–—]\s*")
_EMPHASIS = re.compile(r"(\*\*|__|\*|`)")
_QUOTES = "\"'“”‘’«»„`"
_TRAILING = " \t.,;:!?"
_CHATTER = re.compile(
    r"^(sure|certainly|of course|absolutely|okay|ok|great|here(?:'s| is| are)|below (?:is|are)|"
    r"i hope|hope (?:this|these|that)|let me know|feel free|if you(?:'d| would)? (?:like|need|want)|"
    r"these (?:are|should|were)|this list|note|enjoy|i can|i've|i have|as an ai|would you like|"
    r"happy to|glad to|do you want|in summary|overall)\b",
    re.IGNORECASE,
)


_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def clean_text(text: str) -> str:
    """A model's answer without lone surrogates and control characters (newlines and tabs
    stay): what cannot be encoded as UTF-8 or JSON never reaches a record."""
    return _UNSAFE.sub("", text)


def _json_items(text: str) -> list[str] | None:
    body = text.strip()
    if body.startswith("```"):
        body = body.strip("`").strip()
        if body[:4].lower() == "json":
            body = body[4:]
        body = body.strip()
    if not (body.startswith("[") and body.endswith("]")):
        return None
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, list):
        return None
    items: list[str] = []
    for entry in data:
        if isinstance(entry, str):
            items.append(entry)
        elif isinstance(entry, int | float) and not isinstance(entry, bool):
            items.append(str(entry))
        elif isinstance(entry, dict):
            name = entry.get("name") or entry.get("attribute") or entry.get("value")
            if isinstance(name, str):
                items.append(name)
    return items


def _clean_item(text: str) -> str:
    """Name only: emphasis, quotes, descriptions and trailing punctuation removed."""
    item = text.strip()
    bold = _BOLD_LEAD.match(item)
    item = bold.group(2) if bold else _DESCRIPTION_SPLIT.split(item, maxsplit=1)[0]
    item = _EMPHASIS.sub("", item).strip()
    for _ in range(2):
        item = item.strip().strip(_QUOTES).strip().rstrip(_TRAILING)
    return " ".join(item.split())


def _is_chatter(line: str) -> bool:
    stripped = _EMPHASIS.sub("", line).strip()
    return bool(_CHATTER.match(stripped)) or stripped.endswith(":")


def _line_items(text: str) -> list[str]:
    lines = [line for line in text.splitlines() if line.strip()]
    marked: list[str] = []
    plain: list[str] = []
    for line in lines:
        if _FENCE.match(line) or _HEADING.match(line) or _MARKUP.match(line):
            continue
        marker = _LIST_MARKER.match(line)
        if marker and marker.end() < len(line):
            item = line[marker.end() :]
            if not _EMPHASIS.sub("", item).rstrip().endswith(":"):  # a sub-heading
                marked.append(item)
        elif not _is_chatter(line):
            plain.append(line)
    if len(marked) >= 2:
        return marked  # a list answer: unmarked lines are chatter around it
    items = marked + plain
    if len(items) == 1 and items[0].count(",") >= 2:
        return items[0].split(",")  # "Brie, Camembert, Comté"
    return items


def parse_response(
    text: str,
    *,
    batch_size: int,
    max_response_chars: int = DEFAULT_MAX_RESPONSE_CHARS,
    max_attribute_chars: int = DEFAULT_MAX_ATTRIBUTE_CHARS,
) -> list[str]:
    """Candidates from a model answer: at most ``batch_size``, unique by normalisation."""
    if batch_size <= 0:
        return []
    bounded = text[:max_response_chars]
    raw = _json_items(bounded)
    return _select(raw if raw is not None else _line_items(bounded), batch_size, max_attribute_chars)


def _select(raw: Iterable[str], batch_size: int, max_attribute_chars: int) -> list[str]:
    seen: set[str] = set()
    result: list[str] = []
    for entry in raw:
        if len(entry) > max_attribute_chars * 4:
            continue  # a paragraph, not an attribute
        item = _clean_item(entry)
        if not MIN_ATTRIBUTE_CHARS <= len(item) <= max_attribute_chars:
            continue
        key = normalize(item)
        if len(key) < MIN_ATTRIBUTE_CHARS or key in seen:
            continue
        seen.add(key)
        result.append(item)
        if len(result) >= batch_size:
            break
    return result
