"""A seeded synthetic "shapes" VQA generator where attention matters.

Scenes put 2-6 objects (colour x shape x size) into the cells of a grid, each centred in its
cell (with the cell matching a ViT patch, every object is one image token).
Each question family is generated *constructively for a target answer drawn uniformly*, so
answers are balanced within every family (the most common answer overall, "yes", stays near
3/14 ~ 21%) and the question alone cannot tell the answer: a question-only model stays near the
per-family chance level while a model that looks at the image can answer everything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

COLORS = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (50, 90, 230),
    "yellow": (230, 210, 40),
    "purple": (160, 60, 200),
}
SHAPES = ("square", "circle", "triangle")
SIZES = ("small", "large")
MAX_COUNT = 4
FAMILIES = ("query_color", "query_shape", "count", "exist", "relation", "nearest", "compare")


@dataclass(frozen=True)
class ShapeObject:
    row: int
    col: int
    color: str
    shape: str
    size: str

    def describe(self) -> str:
        return f"{self.color} {self.shape}"


@dataclass(frozen=True)
class Sample:
    objects: tuple[ShapeObject, ...]
    question: str
    answer: str
    family: str


class _Retry(Exception):
    """The random draw cannot produce the target answer; draw again."""


class ShapesGenerator:
    """Draw balanced (scene, question, answer) samples and render them.

    Args:
        seed: generator seed; the same seed gives the same samples and pixels.
        image_size: square image side in pixels.
        grid: cells per side; each object occupies one cell.
        min_objects: fewest objects in a scene (>= 2).
        max_objects: most objects in a scene (<= grid^2).
    """

    def __init__(self, seed: int, *, image_size: int, grid: int, min_objects: int, max_objects: int):
        self.rng = np.random.default_rng(seed)
        self.image_size = image_size
        self.grid = grid
        self.min_objects = min_objects
        self.max_objects = max_objects
        self._families: dict[str, Callable[[], Sample]] = {
            "query_color": self._query_color,
            "query_shape": self._query_shape,
            "count": self._count,
            "exist": self._exist,
            "relation": self._relation,
            "nearest": self._nearest,
            "compare": self._compare,
        }

    # -- scenes -------------------------------------------------------------------------------
    def _choice(self, options):
        return options[int(self.rng.integers(len(options)))]

    def _scene(self, count: int | None = None) -> list[ShapeObject]:
        count = count or int(self.rng.integers(self.min_objects, self.max_objects + 1))
        cells = self.rng.choice(self.grid * self.grid, size=count, replace=False)
        return [
            ShapeObject(
                int(c) // self.grid,
                int(c) % self.grid,
                self._choice(list(COLORS)),
                self._choice(SHAPES),
                self._choice(SIZES),
            )
            for c in cells
        ]

    @staticmethod
    def _replace(obj: ShapeObject, **changes) -> ShapeObject:
        return ShapeObject(**{**obj.__dict__, **changes})

    def _unique_by_description(self, objects: list[ShapeObject], index: int) -> list[ShapeObject]:
        """Recolour other objects so that ``objects[index]`` is the only one with its colour + shape."""
        target = objects[index]
        fixed = []
        for i, obj in enumerate(objects):
            if i != index and (obj.color, obj.shape) == (target.color, target.shape):
                obj = self._replace(obj, color=self._choice([c for c in COLORS if c != target.color]))
            fixed.append(obj)
        return fixed

    def _only_ones_named(self, objects: list[ShapeObject], named: list[ShapeObject]) -> list[ShapeObject]:
        """Recolour every other object that shares a colour + shape with one of ``named`` (no random draw)."""
        taken = {(o.color, o.shape) for o in named}
        return [
            self._replace(o, color=next(c for c in COLORS if (c, o.shape) not in taken))
            if o not in named and (o.color, o.shape) in taken
            else o
            for o in objects
        ]

    # -- question families ---------------------------------------------------------------------
    def _query_color(self) -> Sample:
        objects, color = self._scene(), self._choice(list(COLORS))
        target = self._replace(objects[0], color=color)
        others = [self._replace(o, shape=self._choice([s for s in SHAPES if s != target.shape])) for o in objects[1:]]
        question = f"what color is the {target.shape}?"
        return Sample((target, *others), question, color, "query_color")

    def _query_shape(self) -> Sample:
        objects, shape = self._scene(), self._choice(SHAPES)
        target = self._replace(objects[0], shape=shape)
        others = [self._replace(o, color=self._choice([c for c in COLORS if c != target.color])) for o in objects[1:]]
        return Sample((target, *others), f"what shape is the {target.color} object?", shape, "query_shape")

    def _count(self) -> Sample:
        objects = self._scene(int(self.rng.integers(max(self.min_objects, MAX_COUNT), self.max_objects + 1)))
        wanted = int(self.rng.integers(0, MAX_COUNT + 1))
        attribute, options = ("color", list(COLORS)) if self.rng.random() < 0.5 else ("shape", list(SHAPES))
        value = self._choice(options)
        fixed = []
        for i, obj in enumerate(objects):
            new_value = value if i < wanted else self._choice([o for o in options if o != value])
            fixed.append(self._replace(obj, **{attribute: new_value}))
        self.rng.shuffle(fixed)
        noun = f"{value} objects" if attribute == "color" else f"{value}s"
        return Sample(tuple(fixed), f"how many {noun} are there?", str(wanted), "count")

    def _exist(self) -> Sample:
        objects, answer = self._scene(), self._choice(("yes", "no"))
        color, shape = self._choice(list(COLORS)), self._choice(SHAPES)
        if answer == "yes":
            objects[0] = self._replace(objects[0], color=color, shape=shape)
        else:
            objects = [
                self._replace(o, color=self._choice([c for c in COLORS if c != color]))
                if (o.color, o.shape) == (color, shape)
                else o
                for o in objects
            ]
        self.rng.shuffle(objects)
        return Sample(tuple(objects), f"is there a {color} {shape}?", answer, "exist")

    def _relation(self) -> Sample:
        answer, relation = self._choice(("yes", "no")), self._choice(("left of", "above"))
        objects = self._unique_by_description(self._unique_by_description(self._scene(), 0), 1)
        first, second = objects[0], objects[1]
        if (first.color, first.shape) == (second.color, second.shape):
            raise _Retry
        # the second pass can recolour an object into the first one's description: keep both unique
        objects = self._only_ones_named(objects, [first, second])
        a, b = (first.col, second.col) if relation == "left of" else (first.row, second.row)
        if a == b or (a < b) != (answer == "yes"):
            raise _Retry
        self.rng.shuffle(objects)
        question = f"is the {first.describe()} {relation} the {second.describe()}?"
        return Sample(tuple(objects), question, answer, "relation")

    def _nearest(self) -> Sample:
        shape = self._choice(SHAPES)
        objects = self._unique_by_description(self._scene(), 0)
        anchor = objects[0]
        distances = [(o.row - anchor.row) ** 2 + (o.col - anchor.col) ** 2 for o in objects[1:]]
        nearest = int(np.argmin(distances))
        if distances.count(distances[nearest]) > 1:
            raise _Retry
        objects[1 + nearest] = self._replace(objects[1 + nearest], shape=shape)
        objects = self._unique_by_description(objects, 0)
        self.rng.shuffle(objects)
        return Sample(tuple(objects), f"what shape is the object nearest to the {anchor.describe()}?", shape, "nearest")

    def _compare(self) -> Sample:
        answer = self._choice(("yes", "no"))
        first, second = self.rng.choice(len(SHAPES), size=2, replace=False)
        first, second = SHAPES[first], SHAPES[second]
        objects = self._scene()
        counts = {s: sum(o.shape == s for o in objects) for s in SHAPES}
        if counts[first] == counts[second] or (counts[first] > counts[second]) != (answer == "yes"):
            raise _Retry
        return Sample(tuple(objects), f"are there more {first}s than {second}s?", answer, "compare")

    # -- public --------------------------------------------------------------------------------
    def scene(self) -> tuple[ShapeObject, ...]:
        """A random scene: ``min_objects`` to ``max_objects`` objects in distinct cells."""
        return tuple(self._scene())

    def sample(self, family: str | None = None) -> Sample:
        """One sample of ``family`` (uniformly chosen when None)."""
        family = family or self._choice(FAMILIES)
        for _ in range(1000):
            try:
                return self._families[family]()
            except _Retry:
                continue
        raise RuntimeError(f"could not generate a '{family}' question; the grid may be too small")

    def render(self, objects: tuple[ShapeObject, ...]) -> Image.Image:
        """Draw the scene on a dark background, objects centred in their cells."""
        image = Image.new("RGB", (self.image_size, self.image_size), (16, 16, 16))
        draw = ImageDraw.Draw(image)
        cell = self.image_size // self.grid
        for obj in objects:
            extent = cell - 2 if obj.size == "large" else max(4, cell // 2)
            x0 = obj.col * cell + (cell - extent) // 2
            y0 = obj.row * cell + (cell - extent) // 2
            box = (x0, y0, x0 + extent - 1, y0 + extent - 1)
            color = COLORS[obj.color]
            if obj.shape == "square":
                draw.rectangle(box, fill=color)
            elif obj.shape == "circle":
                draw.ellipse(box, fill=color)
            else:
                draw.polygon(
                    [(x0 + (extent - 1) / 2, y0), (x0, y0 + extent - 1), (x0 + extent - 1, y0 + extent - 1)], fill=color
                )
        return image
