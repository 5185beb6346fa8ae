"""Canonical form of an attribute, for the near-duplicate check (``PRODUCER_NEAR_DUPLICATES``).

The exact check uses the protocol's normalisation (``bloomhash.normalize``: NFKC,
lowercase, whitespace). Models also return the *same* item in other surface forms; these
are folded to one canonical form, checked and added beside the exact one in the same
atomic command, so only the first form seen reaches the orchestrator:

1. compatibility form, diacritics removed, case folded ("Comté" = "comte");
2. a trailing parenthetical or bracketed part dropped ("Brie de Meaux (PDO)");
3. a trailing certification mark dropped, after a comma or dash too: PDO, PGI, AOC, AOP,
   DOP, DOC, DOCG, IGP, TSG, ®, ™ ("Roquefort AOP", "Feta - PDO");
4. "Number 5", "No. 5", "Nr 5", "#5" = "no 5";
5. apostrophes removed, every other punctuation and hyphen a space ("brie-de-meaux");
6. a leading article dropped: the, a, an, le, la, les, l' ("The Stinking Bishop");
7. simple plurals singular, word by word, for words of 4 letters or more: -ies and -ie →
   -y; -ches, -shes, -xes, -zes, -sses, -oes → without -es; -s → without it, except -ss
   ("Cheddars" = "Cheddar", "Tomme de Savoies" = "Tomme de Savoie", "Swiss" stays).
   The canonical form is a key, never shown: "brie" becomes "bry", in every form.

The rule for what is *not* folded: a qualifier that is a word of the name stays, however
it looks: "Gouda Reserve", "Brie Noir", "Camembert de Normandie", "Cheddar Extra Mature"
are other products than "Gouda", "Brie", "Camembert", "Cheddar". Only what never names a
different product is dropped: parentheticals (a note about the item), certification
marks, articles, punctuation, case, accents and plural endings.
"""

from __future__ import annotations

import re
import unicodedata

_PARENTHETICAL = re.compile(r"\s*[(\[{][^()\[\]{}]*[)\]}]\s*$")
_MARKS = r"(?:pdo|pgi|aoc|aop|dop|doc|docg|igp|tsg|stg)"
_TRAILING_MARK = re.compile(rf"(?:\s*[,\-–—]\s*|\s+){_MARKS}\.?\s*$")
_NUMBER = re.compile(r"(?:\bnumber|\bnum\.?|\bnr\.?|\bno\.|#)\s*(?=\d)")
_APOSTROPHES = re.compile(r"['’`´]")
_SYMBOLS = re.compile("[®™©℠]")  # marks, not names (NFKD would turn ™ into "TM")
_ELIDED_ARTICLE = re.compile(r"^l['’`´]\s*")
_NOT_WORD = re.compile(r"[^\w]+|_+")
_ARTICLES = frozenset({"the", "a", "an", "le", "la", "les", "l"})


def _strip_accents(text: str) -> str:
    if text.isascii():  # nothing to decompose (most names: the check runs on every candidate)
        return text
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _singular(word: str) -> str:
    if len(word) <= 3 or not word.isalpha():
        return word
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith("ie"):  # so that "-ie" and its plural "-ies" meet ("savoie", "savoies")
        return word[:-2] + "y"
    if word.endswith(("ches", "shes", "xes", "zes", "sses", "oes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def canonical(text: str) -> str:
    """The canonical form (see the module's rules); never empty for a non-empty name."""
    folded = _strip_accents(_SYMBOLS.sub(" ", text)).casefold().strip()
    for _ in range(3):  # "Feta (Greece) PDO", "Brie [AOC] (France)"
        shorter = _TRAILING_MARK.sub("", _PARENTHETICAL.sub("", folded)).strip()
        if shorter == folded or not shorter:
            break
        folded = shorter
    folded = _NUMBER.sub("no ", folded)
    folded = _APOSTROPHES.sub("", _ELIDED_ARTICLE.sub("", folded))
    words = _NOT_WORD.sub(" ", folded).split()
    if len(words) > 1 and words[0] in _ARTICLES:
        words = words[1:]
    result = " ".join(_singular(w) for w in words)
    return result or text.strip().casefold()
