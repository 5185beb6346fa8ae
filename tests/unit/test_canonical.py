"""The near-duplicate rule, both sides: what is folded, and what must stay distinct."""

from __future__ import annotations

import random

import pytest

from producer_tasks.canonical import canonical
from tests.variants import BASES, LOOKALIKES, variant


@pytest.mark.parametrize(
    "forms",
    [
        ["Brie de Meaux", "brie-de-meaux", "Brie de Meaux (PDO)", "BRIE DE MEAUX AOP", "Brie de Meaux, AOC"],
        ["Comté", "Comte", "COMTÉ", "Comtés"],
        ["The Stinking Bishop", "Stinking Bishop", "stinking-bishop"],
        ["Feta", "Feta - PDO", "Feta (Greece)", "Feta [PDO] (Greece)", "feta™"],
        ["No. 5", "Number 5", "#5", "no 5", "Nr. 5"],
        ["L'Etivaz", "Etivaz", "l’Étivaz"],
        ["Cheddars", "Cheddar"],
        ["Tomme de Savoie", "Tommes de Savoies"],
        ["Parmigiano-Reggiano®", "Parmigiano Reggiano"],
    ],
)
def test_surface_variants_share_one_canonical_form(forms: list[str]) -> None:
    assert len({canonical(f) for f in forms}) == 1, {f: canonical(f) for f in forms}


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("Gouda", "Gouda Reserve"),  # a qualifier that names a different product
        ("Brie", "Brie Noir"),
        ("Camembert", "Camembert de Normandie"),
        ("Cheddar", "Cheddar Extra Mature"),
        ("Pecorino", "Pecorino Romano"),
        ("Swiss", "Swis"),
        ("No. 5", "No. 6"),
    ],
)
def test_a_different_product_is_never_folded(one: str, other: str) -> None:
    assert canonical(one) != canonical(other)


def test_no_false_merge_among_names_that_look_alike() -> None:
    forms = {canonical(name) for name in LOOKALIKES}
    assert len(forms) == len(LOOKALIKES)  # false-merge rate 0 of 51 look-alike names


def test_every_generated_variant_folds_to_its_base() -> None:
    rng = random.Random(5)
    for base in BASES:
        for _ in range(50):
            form = variant(base, rng)
            assert canonical(form) == canonical(base), (base, form)
    assert len({canonical(b) for b in BASES}) == len(BASES)


def test_never_empty() -> None:
    assert canonical("(PDO)") and canonical("The") == "the" and canonical("  ") == ""
