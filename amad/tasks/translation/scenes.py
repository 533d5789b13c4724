"""The built-in translation data: a shapes scene described in English, with its German translation.

German marks a noun's gender on its article and adjectives (*ein rot**er** Kreis*, *ein rot**es**
Quadrat*, *ein**en** rot**en** Kreis*), and English does not; where the English description says
"shape" (the share ``hypernym`` of object mentions), the German noun, and with it the gender of the
article and the adjectives, is told by the image alone. A model that ignores the image must guess
those words, so shuffling the images across sentences measurably costs it BLEU (Elliott 2018's
adversarial evaluation has something to find). Sentences start with a capital letter and German
nouns are capitalised, as in Multi30K, so cased and lowercased BLEU differ.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from amad.data.shapes import ShapeObject

COLORS_DE = {"red": "rot", "green": "grün", "blue": "blau", "yellow": "gelb", "purple": "violett"}
SIZES_DE = {"small": "klein", "large": "groß"}
NOUNS_DE = {"square": ("Quadrat", "n"), "circle": ("Kreis", "m"), "triangle": ("Dreieck", "n")}
NUMBERS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
NUMBERS_DE = ("null", "eins", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun")
RELATIONS_DE = {"above": "über dem", "below": "unter dem", "left of": "links vom", "right of": "rechts vom"}
# the article and the adjective ending of each case after an indefinite / definite article, by gender
ARTICLES = {
    ("nominative", "indefinite"): {"m": ("ein", "er"), "n": ("ein", "es")},
    ("nominative", "definite"): {"m": ("der", "e"), "n": ("das", "e")},
    ("accusative", "indefinite"): {"m": ("einen", "en"), "n": ("ein", "es")},
    ("dative", "indefinite"): {"m": ("einem", "en"), "n": ("einem", "en")},
    ("dative", "definite"): {"m": ("", "en"), "n": ("", "en")},  # the article is in the preposition (dem, vom)
}


@dataclass(frozen=True)
class Mention:
    """One object as a sentence names it: with its size or not, by its noun or as "shape"."""

    obj: ShapeObject
    size: bool
    hypernym: bool

    def english(self, article: str) -> str:
        noun = "shape" if self.hypernym else self.obj.shape
        words = [article, *([self.obj.size] if self.size else []), self.obj.color, noun]
        return " ".join(word for word in words if word)

    def german(self, case: str, definite: bool) -> str:
        noun, gender = NOUNS_DE[self.obj.shape]
        article, ending = ARTICLES[(case, "definite" if definite else "indefinite")][gender]
        adjectives = [*([SIZES_DE[self.obj.size]] if self.size else []), COLORS_DE[self.obj.color]]
        return " ".join(word for word in [article, *(a + ending for a in adjectives), noun] if word)


def _join(parts: list[str], conjunction: str) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + f" {conjunction} " + parts[-1]


def _relation(first: ShapeObject, second: ShapeObject) -> str:
    """Where ``first`` is relative to ``second`` (the dominant direction)."""
    rows, cols = first.row - second.row, first.col - second.col
    if abs(rows) >= abs(cols):
        return "above" if rows < 0 else "below"
    return "left of" if cols < 0 else "right of"


def _position(obj: ShapeObject, grid: int) -> tuple[str, str]:
    vertical = ("top", "oben") if obj.row < grid / 2 else ("bottom", "unten")
    horizontal = ("left", "links") if obj.col < grid / 2 else ("right", "rechts")
    return f"at the {vertical[0]} {horizontal[0]}", f"{vertical[1]} {horizontal[1]}"


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


def scene_sentence_pair(
    objects: tuple[ShapeObject, ...], grid: int, hypernym: float, rng: np.random.Generator
) -> tuple[str, str]:
    """``(English, German)``: one description of the scene (a template drawn at random, every object named)."""
    order = [objects[i] for i in rng.permutation(len(objects))]

    def mentions(size: bool | None = None) -> list[Mention]:
        return [
            Mention(o, bool(rng.random() < 0.5) if size is None else size, bool(rng.random() < hypernym)) for o in order
        ]

    template = int(rng.integers(5))
    if template == 0:  # a listing
        named = mentions()
        english = _join([m.english("a") for m in named], "and")
        german = _join([m.german("nominative", False) for m in named], "und")
    elif template == 1:  # a count, then a listing
        named = mentions(size=False)
        english = f"{NUMBERS[len(named)]} shapes: " + _join([m.english("a") for m in named], "and")
        german = f"{NUMBERS_DE[len(named)]} Formen: " + _join([m.german("nominative", False) for m in named], "und")
    elif template == 2:  # what the picture shows
        named = mentions()
        english = "the picture shows " + _join([m.english("a") for m in named], "and")
        german = "das Bild zeigt " + _join([m.german("accusative", False) for m in named], "und")
    elif template == 3:  # a relation between two objects, the others listed
        named = mentions(size=False)
        first, second, rest = named[0], named[1], named[2:]
        relation = _relation(first.obj, second.obj)
        english = f"{first.english('the')} is {relation} {second.english('the')}"
        german = f"{first.german('nominative', True)} ist {RELATIONS_DE[relation]} {second.german('dative', True)}"
        if rest:
            english += ", with " + _join([m.english("a") for m in rest], "and")
            german += ", mit " + _join([m.german("dative", False) for m in rest], "und")
    else:  # positions in the grid
        named = mentions(size=False)
        places = [_position(m.obj, grid) for m in named]
        english = _join([f"{m.english('a')} {place[0]}" for m, place in zip(named, places)], "and")
        german = _join([f"{m.german('nominative', False)} {place[1]}" for m, place in zip(named, places)], "und")
    return _capitalised(english), _capitalised(german)
