"""Captions of a shapes scene for the built-in caption data (retrieval, captioning).

Every caption names every object, so that a caption describes its scene (as a real caption
describes its photo), in different words each time: attributes in a varied order, with or without
sizes, with a count, with a spatial relation between two objects, or with positions in the grid.
"""

from __future__ import annotations

import numpy as np

from amad.data.shapes import ShapeObject

NUMBERS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def count_name(count: int) -> str:
    """``count`` in words up to nine, in digits beyond."""
    return NUMBERS[count] if count < len(NUMBERS) else str(count)


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _name(obj: ShapeObject, size: bool) -> str:
    return f"a {obj.size} {obj.color} {obj.shape}" if size else f"a {obj.color} {obj.shape}"


def _relation(first: ShapeObject, second: ShapeObject) -> str:
    """Where ``first`` is relative to ``second`` (the dominant direction)."""
    rows, cols = first.row - second.row, first.col - second.col
    if abs(rows) >= abs(cols):
        return "above" if rows < 0 else "below"
    return "left of" if cols < 0 else "right of"


def _position(obj: ShapeObject, grid: int) -> str:
    vertical = "top" if obj.row < grid / 2 else "bottom"
    horizontal = "left" if obj.col < grid / 2 else "right"
    return f"{vertical} {horizontal}"


def scene_captions(objects: tuple[ShapeObject, ...], grid: int, count: int, rng: np.random.Generator) -> list[str]:
    """``count`` different captions of the scene (templates in a random order, objects shuffled)."""

    def shuffled() -> list[ShapeObject]:
        return [objects[i] for i in rng.permutation(len(objects))]

    def listing() -> str:
        return _join([_name(o, size=True) for o in shuffled()])

    def counted() -> str:
        noun = "shape" if len(objects) == 1 else "shapes"
        return f"{count_name(len(objects))} {noun}: " + _join([_name(o, size=False) for o in shuffled()])

    def related() -> str:
        order = shuffled()
        if len(order) == 1:
            return f"{_name(order[0], size=True)} on a dark background"
        head = f"{_name(order[0], size=False)} {_relation(order[0], order[1])} {_name(order[1], size=False)}"
        rest = [_name(o, size=True) for o in order[2:]]
        return head + (f", with {_join(rest)}" if rest else "")

    def placed() -> str:
        return _join([f"{_name(o, size=False)} at the {_position(o, grid)}" for o in shuffled()])

    def plain() -> str:
        return "a picture of " + _join([f"{o.color} {o.shape}" for o in shuffled()])

    templates = [listing, counted, related, placed, plain]
    captions: list[str] = []
    for attempt in range(20 * count):
        caption = templates[(attempt + int(rng.integers(len(templates)))) % len(templates)]()
        if caption not in captions:
            captions.append(caption)
        if len(captions) == count:
            break
    while len(captions) < count:  # a one-object scene has few distinct phrasings: repeat, as real data may
        captions.append(captions[len(captions) % max(1, len(captions))])
    return captions
