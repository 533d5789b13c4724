"""The records of every split of an image-caption data section, ready to write: the built-in scenes
rendered, or the configured files read, their images checked and imported.

Images are hard-linked (or copied) under the prepared folder's ``images/`` and the records' paths
rewritten to it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from amad.data.captions.config import SPLITS, CaptionDataConfig
from amad.data.captions.scenes import count_name, scene_captions
from amad.data.captions.sources import ImageRecord, read_coco, read_csv, read_karpathy
from amad.data.images import import_image


def generate_shapes(config: CaptionDataConfig, seed: int, out: Path) -> dict[str, list[ImageRecord]]:
    """Generate and render the synthetic splits into ``out/images`` (PNG).

    The built-in scenes are classed by their object count ("three shapes"): what a zero-shot prompt
    can name and every caption implies.
    """
    shapes = config.shapes
    (out / "images").mkdir(parents=True)
    splits = {}
    for split_index, split in enumerate(SPLITS):
        generator = shapes.generator(seed * 1000 + 500 + split_index)
        rng = np.random.default_rng([seed, split_index])
        records = []
        for index in range(getattr(shapes, split)):
            objects = generator.scene()
            name = f"images/{split}_{index:06d}.png"
            generator.render(objects).save(out / name)
            captions = scene_captions(objects, shapes.grid, shapes.captions, rng)
            label = f"{count_name(len(objects))} shape" + ("s" if len(objects) > 1 else "")
            records.append(ImageRecord(f"{split}-{index}", name, tuple(captions), label))
        splits[split] = records
    return splits


def read_files(config: CaptionDataConfig) -> dict[str, list[ImageRecord]]:
    """The records of every split from the configured annotation files."""
    root = Path(config.path)
    records = {}
    for split in SPLITS:
        path = root / getattr(config.files, split)
        if config.source == "csv":
            csv = config.csv
            records[split] = read_csv(
                path,
                separator=csv.separator,
                image_column=csv.image_column,
                caption_column=csv.caption_column,
                class_column=csv.class_column,
            )
        elif config.source == "coco":
            records[split] = read_coco(path)
        else:
            records[split] = read_karpathy(path, split)
    return records


def import_images(
    records: dict[str, list[ImageRecord]], config: CaptionDataConfig, out: Path
) -> dict[str, list[ImageRecord]]:
    """Check that every image exists and decodes, hard-link (or copy) it under ``out/images`` and
    rewrite the paths."""
    root = Path(config.path)
    images = root / config.images
    imported = {}
    for split, split_records in records.items():
        source_file = root / getattr(config.files, split)
        rewritten = []
        for record in split_records:
            imported_path = import_image(images, record.image, out, f"{source_file}: {split} image {record.id!r}")
            rewritten.append(ImageRecord(record.id, imported_path, record.captions, record.label))
        imported[split] = rewritten
    return imported


def split_records(
    config: CaptionDataConfig, seed: int, out: Path, check_splits: Callable | None = None
) -> dict[str, list[ImageRecord]]:
    """Every split's records, their images under ``out/images``.

    ``check_splits({split: captions})`` may refuse the splits (raising) before any image is written.
    """
    if config.source == "shapes":
        if check_splits is not None:
            check_splits({s: getattr(config.shapes, s) * config.shapes.captions for s in SPLITS})
        return generate_shapes(config, seed, out)
    records = read_files(config)
    if check_splits is not None:
        check_splits({s: sum(len(r.captions) for r in rs) for s, rs in records.items()})
    return import_images(records, config, out)


def class_names(splits: dict[str, list[ImageRecord]]) -> list[str] | None:
    """The sorted class names over all splits; None where the data names no class."""
    labels = {record.label for records in splits.values() for record in records}
    return None if labels == {None} else sorted(labels)
