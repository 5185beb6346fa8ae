"""Parsing realistic model answers into candidates (list items are kept, not skipped)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from producer_tasks.bloomhash import normalize
from producer_tasks.generation.parsing import parse_response


def parse(text: str, batch_size: int = 20) -> list[str]:
    return parse_response(text, batch_size=batch_size)


def test_numbered_list_with_chatter_keeps_the_items() -> None:
    answer = (
        "Sure! Here are 5 French cheeses:\n\n"
        "1. Brie de Meaux\n2. Comté\n3. Roquefort\n4. Camembert\n5. Reblochon\n\n"
        "Let me know if you'd like more!"
    )
    assert parse(answer) == ["Brie de Meaux", "Comté", "Roquefort", "Camembert", "Reblochon"]


def test_seed_defect_fixed_list_items_are_kept_not_skipped() -> None:
    assert parse("- Brie\n- Comté\n1. Munster\n2) Époisses") == ["Brie", "Comté", "Munster", "Époisses"]


def test_bold_names_with_descriptions_keep_the_name_only() -> None:
    answer = (
        "3. **Brie de Meaux** – a soft cheese from Île-de-France\n"
        "4. **Comté**: a hard cheese aged for months\n"
        "5. Roquefort - blue cheese from sheep's milk\n"
        "6. Mont d'Or (seasonal, from the Jura)\n"
        "7. __Saint-Nectaire__"
    )
    assert parse(answer) == ["Brie de Meaux", "Comté", "Roquefort", "Mont d'Or", "Saint-Nectaire"]


def test_bullets_quotes_and_emphasis_are_stripped() -> None:
    answer = '• "Gruyère"\n* *Emmental*\n- `Raclette`\n+ «Vacherin»\n· ‘Tête de Moine’'
    assert parse(answer) == ["Gruyère", "Emmental", "Raclette", "Vacherin", "Tête de Moine"]


def test_headings_blank_lines_and_mixed_styles() -> None:
    answer = (
        "## Soft cheeses\n\n1. Brie\n\n2. Camembert\n\n"
        "**Hard cheeses:**\n- Comté\n- Beaufort.\n\nI hope this helps!"
    )
    assert parse(answer) == ["Brie", "Camembert", "Comté", "Beaufort"]


def test_plain_lines_without_markers() -> None:
    assert parse("Here is a list:\nBrie\nCamembert\nComté\nHope this helps!") == [
        "Brie",
        "Camembert",
        "Comté",
    ]


def test_json_array_answers() -> None:
    assert parse('["Brie", "Comté", "brie", "x"]') == ["Brie", "Comté"]
    assert parse('```json\n["Brie", {"name": "Comté"}, 42]\n```') == ["Brie", "Comté", "42"]
    assert parse("[not json") == ["[not json"]


def test_comma_separated_single_line() -> None:
    assert parse("Brie, Camembert, Comté, Munster") == ["Brie", "Camembert", "Comté", "Munster"]


def test_duplicates_by_normalisation_and_bounds() -> None:
    answer = "1. Brie\n2. BRIE\n3.   brie  \n4. Ｂｒｉｅ\n5. X\n6. " + "a" * 201 + "\n7. Comté"
    assert parse(answer) == ["Brie", "Comté"]


def test_truncated_to_batch_size() -> None:
    answer = "\n".join(f"{i}. Cheese number {i}" for i in range(1, 50))
    assert parse(answer, batch_size=5) == [f"Cheese number {i}" for i in range(1, 6)]
    assert parse(answer, batch_size=0) == []


def test_garbage_and_empty_answers_give_nothing() -> None:
    assert parse("") == []
    assert parse("\n\n   \n") == []
    assert parse("Sure! Here you go:") == []
    assert parse("<html><body><h1>502 Bad Gateway</h1></body></html>") == []
    assert parse("<!DOCTYPE html>\n<html>\n<head><title>Error</title></head>\n</html>") == []


def test_huge_answer_is_bounded() -> None:
    answer = "\n".join(f"{i}. Item {i}" for i in range(200_000))
    result = parse_response(answer, batch_size=10_000, max_response_chars=1000)
    assert 0 < len(result) < 100


@settings(max_examples=400)
@given(st.text(max_size=3000), st.integers(0, 50), st.integers(2, 300))
def test_parsing_never_raises_and_respects_bounds(text: str, batch_size: int, max_chars: int) -> None:
    result = parse_response(text, batch_size=batch_size, max_attribute_chars=max_chars)
    assert len(result) <= batch_size
    assert all(2 <= len(item) <= max_chars for item in result)
    keys = [normalize(item) for item in result]
    assert len(keys) == len(set(keys))
    assert all(item == item.strip() and "\n" not in item for item in result)


def test_clean_text_drops_lone_surrogates_and_control_characters() -> None:
    from producer_tasks.generation.parsing import clean_text

    dirty = "1. Brie\ud800\n2. Com\x00té\t(AOP)\r\n3. \udfffGouda\x1b\x7f\x85"
    cleaned = clean_text(dirty)
    assert cleaned == "1. Brie\n2. Comté\t(AOP)\r\n3. Gouda"
    cleaned.encode("utf-8")  # encodable: nothing left that json or Redis would reject
