"""Surface variants of names, as models write them, and names that only look alike.

Used by the near-duplicate test and ``bench/neardup.py``: a variant knows its base name,
so whether two delivered items are the same item is known without the code under test.
"""

from __future__ import annotations

import random
import unicodedata

BASES = [
    "Brie de Meaux",
    "Comté",
    "Roquefort",
    "Camembert",
    "Beaufort",
    "Reblochon",
    "Munster",
    "Époisses",
    "Saint-Nectaire",
    "Tomme de Savoie",
    "Morbier",
    "Ossau-Iraty",
    "Mimolette",
    "Cantal",
    "Salers",
    "Langres",
    "Chaource",
    "Neufchâtel",
    "Pont-l'Évêque",
    "Valençay",
    "Crottin de Chavignol",
    "Sainte-Maure de Touraine",
    "Abondance",
    "Bleu d'Auvergne",
    "Fourme d'Ambert",
    "Livarot",
    "Banon",
    "Brocciu",
    "Picodon",
    "Rocamadour",
    "Gruyère",
    "Emmental",
    "Appenzeller",
    "Tête de Moine",
    "Vacherin Mont-d'Or",
    "Sbrinz",
    "Raclette",
    "Parmigiano Reggiano",
    "Grana Padano",
    "Pecorino Romano",
    "Gorgonzola",
    "Taleggio",
    "Fontina",
    "Asiago",
    "Montasio",
    "Provolone",
    "Mozzarella di Bufala",
    "Burrata",
    "Ricotta",
    "Scamorza",
    "Castelmagno",
    "Bra",
    "Robiola",
    "Stracchino",
    "Manchego",
    "Idiazabal",
    "Mahón",
    "Cabrales",
    "Tetilla",
    "Zamorano",
    "Roncal",
    "Torta del Casar",
    "Queso Ibores",
    "Majorero",
    "Serra da Estrela",
    "Azeitão",
    "São Jorge",
    "Feta",
    "Kefalotyri",
    "Graviera",
    "Halloumi",
    "Kasseri",
    "Manouri",
    "Cheddar",
    "Stilton",
    "Red Leicester",
    "Double Gloucester",
    "Wensleydale",
    "Lancashire",
    "Caerphilly",
    "Cheshire",
    "Shropshire Blue",
    "Stinking Bishop",
    "Gouda",
    "Edam",
    "Leerdammer",
    "Maasdam",
    "Limburger",
    "Tilsiter",
    "Allgäuer Emmentaler",
    "Havarti",
    "Danablu",
    "Esrom",
    "Jarlsberg",
    "Gjetost",
    "Västerbottensost",
    "Herrgård",
    "Oscypek",
    "Bryndza",
    "Liptauer",
    "Paneer",
    "Queso Fresco",
    "Cotija",
    "Oaxaca",
]

# different products whose names look alike: none of these may be folded into another
LOOKALIKES = [
    "Gouda",
    "Gouda Reserve",
    "Aged Gouda",
    "Brie",
    "Brie Noir",
    "Brie de Meaux",
    "Brie de Melun",
    "Camembert",
    "Camembert de Normandie",
    "Cheddar",
    "Cheddar Extra Mature",
    "Red Cheddar",
    "Emmental",
    "Emmentaler",
    "Allgäuer Emmentaler",
    "Gruyère",
    "Gruyère d'Alpage",
    "Pecorino",
    "Pecorino Romano",
    "Pecorino Sardo",
    "Tomme",
    "Tomme de Savoie",
    "Tomme Crayeuse",
    "Bleu",
    "Bleu d'Auvergne",
    "Bleu de Gex",
    "Mozzarella",
    "Mozzarella di Bufala",
    "Provolone",
    "Provolone Piccante",
    "Feta",
    "Feta Barrel Aged",
    "Manchego",
    "Manchego Curado",
    "Leicester",
    "Red Leicester",
    "Gloucester",
    "Double Gloucester",
    "Single Gloucester",
    "Munster",
    "Munster-Géromé",
    "Asiago",
    "Asiago Stravecchio",
    "Grana",
    "Grana Padano",
    "Fontina",
    "Fontal",
    "Edam",
    "Edammer",
    "Tilsit",
    "Tilsiter",
]


def variant(name: str, rng: random.Random) -> str:
    """One surface form of ``name``: case, hyphens, accents, a mark, an article, a plural."""
    text = name
    choice = rng.random()
    if choice < 0.15:
        text = text.upper()
    elif choice < 0.3:
        text = text.lower()
    if rng.random() < 0.2:
        text = text.replace(" ", "-")
    elif rng.random() < 0.2:
        text = text.replace("-", " ")
    if rng.random() < 0.2:
        text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    suffix = rng.random()
    if suffix < 0.12:
        text += " (PDO)"
    elif suffix < 0.2:
        text += " AOP"
    elif suffix < 0.26:
        text += ", DOP"
    elif suffix < 0.32 and not text.lower().endswith("s"):
        text += "s"
    if rng.random() < 0.1:
        text = "The " + text
    return text
