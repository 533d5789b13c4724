"""The image-caption data section (``data``) of the tasks that read captions: its source (the
built-in scenes, open_clip CSV, COCO captions JSON, Karpathy split JSON) and where its files are.

No defaults here: ``params.yaml`` holds every value (see docs/configuration.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from amad.config.typed import require, require_choice
from amad.data.shapes_config import ShapesConfig

DATA_SOURCES = ("shapes", "csv", "coco", "karpathy")
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class SplitFilesConfig:
    """One annotation file per split, relative to ``data.path`` (Karpathy: usually the same file)."""

    train: str
    val: str
    test: str


@dataclass(frozen=True)
class CSVConfig:
    """open_clip's CSV convention: a header row, one caption per row; rows naming the same image
    are one image with several captions."""

    separator: str
    image_column: str
    caption_column: str
    class_column: str | None  # the image's class name on every row (zero-shot classification), or null

    def validate(self, key: str) -> None:
        require(len(self.separator) == 1, f"{key}.separator", f"must be one character, got {self.separator!r}")
        require(self.image_column != self.caption_column, f"{key}.caption_column", "must differ from image_column")
        require(
            self.class_column not in (self.image_column, self.caption_column),
            f"{key}.class_column",
            "must differ from image_column and caption_column",
        )


@dataclass(frozen=True)
class CaptionedShapesConfig(ShapesConfig):
    """The built-in scenes, each with several generated captions."""

    captions: int

    def validate(self, key: str) -> None:
        super().validate(key)
        require(1 <= self.captions <= 10, f"{key}.captions", f"must be in 1..10, got {self.captions}")


@dataclass(frozen=True)
class CaptionDataConfig:
    """Where the image-caption data comes from."""

    source: str
    path: str
    images: str  # the image folder, relative to path; image paths in the files are relative to it
    files: SplitFilesConfig
    csv: CSVConfig
    shapes: CaptionedShapesConfig

    def validate(self, key: str) -> None:
        require_choice(self.source, DATA_SOURCES, f"{key}.source")
        require(Path(self.path).is_dir(), f"{key}.path", f"no such folder: {self.path}")
        if self.source == "shapes":
            return
        root = Path(self.path)
        require((root / self.images).is_dir(), f"{key}.images", f"no such folder: {root / self.images}")
        for split in SPLITS:
            name = getattr(self.files, split)
            require((root / name).is_file(), f"{key}.files.{split}", f"no such file: {root / name}")
