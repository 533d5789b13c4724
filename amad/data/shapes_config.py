"""``data.shapes``: the built-in synthetic scenes (:class:`~amad.data.shapes.ShapesGenerator`), declared
once for every task (torch- and numpy-free; a task adds its own fields by subclassing)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from amad.config.typed import require

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class ShapesConfig:
    """Scene counts per split and the scenes' geometry."""

    train: int
    val: int
    test: int
    image_size: int
    grid: int
    min_objects: int
    max_objects: int

    def validate(self, key: str) -> None:
        for split in SPLITS:
            require(getattr(self, split) >= 1, f"{key}.{split}", f"must be >= 1, got {getattr(self, split)}")
        require(2 <= self.grid <= 8, f"{key}.grid", f"must be in 2..8, got {self.grid}")
        require(
            self.image_size >= 1 and self.image_size % self.grid == 0 and self.image_size // self.grid >= 6,
            f"{key}.image_size",
            f"must be a multiple of {key}.grid ({self.grid}) with cells of at least 6 pixels, got {self.image_size}",
        )
        require(
            2 <= self.min_objects <= self.max_objects,
            f"{key}.min_objects",
            f"need 2 <= {key}.min_objects <= {key}.max_objects, got {self.min_objects} and {self.max_objects}",
        )
        require(
            self.max_objects <= self.grid**2,
            f"{key}.max_objects",
            f"at most {key}.grid^2 = {self.grid**2}, got {self.max_objects}",
        )

    def generator(self, seed: int) -> Any:
        """A :class:`~amad.data.shapes.ShapesGenerator` of these scenes, seeded with ``seed``."""
        from amad.data.shapes import ShapesGenerator

        return ShapesGenerator(
            seed,
            image_size=self.image_size,
            grid=self.grid,
            min_objects=self.min_objects,
            max_objects=self.max_objects,
        )
