"""Prompts: the template unchanged, and the novelty strategy's avoid list within its budget."""

from __future__ import annotations

import random
import string

from producer_tasks.generation.prompt import AVOID_HEADER, avoid_section, build_prompt, estimate_tokens


def test_the_template_is_kept_and_the_avoid_list_comes_last() -> None:
    prompt = build_prompt("List {batch_size} {topic}", topic="cheeses", batch_size=5, avoid="X")
    assert prompt.startswith("List 5 cheeses\n\n") and prompt.endswith("\n\nX")
    assert build_prompt("List {topic}", topic="t", batch_size=1) == build_prompt(
        "List {topic}", topic="t", batch_size=1, avoid=""
    )


def test_the_avoid_list_never_exceeds_its_token_budget() -> None:
    rng = random.Random(9)
    for _ in range(500):
        budget = rng.randrange(0, 400)
        items = [
            "".join(rng.choices(string.ascii_letters + " ;é", k=rng.randrange(1, 40))) for _ in range(80)
        ]
        section = avoid_section(items[:20], items[20:], budget_tokens=budget)
        assert estimate_tokens(section) <= budget, (budget, section)
        assert section == "" or section.startswith(AVOID_HEADER)


def test_most_repeated_first_then_the_others_and_no_item_twice() -> None:
    section = avoid_section(["Brie", "Gouda"], ["Gouda", "Feta", "Comté"], budget_tokens=100)
    assert section == AVOID_HEADER + "Brie; Gouda; Feta; Comté"
    assert avoid_section(["Brie"], [], budget_tokens=5) == ""  # the header alone does not fit
    assert "a, b" in avoid_section(["a; b"], [], budget_tokens=100)  # the separator stays a separator
    # the most repeated take at most 80 % of the budget: the rotating part always has room
    long = [f"Cheese number {i}" for i in range(100)]
    section = avoid_section(long, ["Rotating One"], budget_tokens=120)
    assert "Rotating One" in section


def test_a_focused_prompt_keeps_the_template_and_names_its_facet_once() -> None:
    from producer_tasks.generation.prompt import FACETS_MARK, FOCUS_HEADER, facets_prompt, focus_of

    prompt = build_prompt("List {batch_size} {topic}", topic="cheese", batch_size=5, facet="Alpine cheese")
    assert prompt.startswith("List 5 cheese\n\n")
    assert prompt.count(FOCUS_HEADER) == 1 and focus_of(prompt) == "Alpine cheese"
    assert focus_of(build_prompt("List {topic}", topic="cheese", batch_size=5)) is None
    with_avoid = build_prompt(
        "List {topic}", topic="c", batch_size=5, facet="Blue", avoid=f"{AVOID_HEADER}Brie"
    )
    assert focus_of(with_avoid) == "Blue" and with_avoid.endswith(f"{AVOID_HEADER}Brie")
    asked = facets_prompt("cheese", 12)
    assert "12" in asked and FACETS_MARK in asked and "cheese" in asked


def test_facets_are_drawn_by_what_they_still_bring() -> None:
    from producer_tasks.state.novelty import choose_facet

    rng = random.Random(3)
    assert choose_facet({}, batch_size=10, rng=rng) == ""
    facets = {"fresh": (0, 0), "rich": (4, 30), "exhausted": (20, 1)}  # (cycles, new attributes)
    drawn = [choose_facet(facets, batch_size=10, rng=rng) for _ in range(3000)]
    share = {name: drawn.count(name) / len(drawn) for name in facets}
    # weights 1, 31/41 and 2/201: untried first, still rich next, exhausted almost never
    assert share["fresh"] > share["rich"] > 10 * share["exhausted"]
    assert share["exhausted"] > 0  # never ruled out: a model's facet can come back to life
