"""The torch datasets over a prepared image-caption folder (retrieval, captioning): image-caption pairs, the images alone, the captions alone."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from amad.data.captions.sources import ImageRecord, read_records
from amad.data.preprocess import Preprocess
from amad.errors import DataError


class PairDataset(Dataset):
    """Samples ``{"pixels" [3,H,W], "tokens" [L], "image" (image index), "index" (pair index)}``:
    one per (image, caption) pair of one split, images in file order, each image's captions in turn.

    Captions are tokenised once up front; images are read lazily and, while the split's decoded
    images fit in ``cache_mib``, kept in memory as resized uint8 (an image serves all its captions).

    Args:
        folder: a prepared folder (``data/prepared``).
        split: ``train``, ``val`` or ``test``; or a path to any records file.
        preprocess: the model's preprocessing.
        cache_mib: memory for decoded images; the split is cached only if all of it fits.
        classes: the class names of the whole data set (``summary.json``); None: the split's own.

    Where the records have labels, ``classes`` lists the class names and ``labels`` ``[images]``
    each image's class index; otherwise both are None.
    """

    def __init__(
        self,
        folder: str | Path,
        split: str,
        preprocess: Preprocess,
        *,
        cache_mib: int = 2048,
        classes: list[str] | None = None,
    ) -> None:
        path = Path(split) if split.endswith(".jsonl") else Path(folder) / f"{split}.jsonl"
        self.root = path.parent
        self.records: list[ImageRecord] = read_records(path)
        self.preprocess = preprocess
        self.classes: list[str] | None = None
        self.labels: torch.Tensor | None = None
        if self.records[0].label is not None:  # read_records: every record has a label, or none has
            self.classes = list(classes) if classes is not None else sorted({r.label for r in self.records})
            index = {name: position for position, name in enumerate(self.classes)}
            unknown = next((r for r in self.records if r.label not in index), None)
            if unknown is not None:
                raise DataError(f"{path}: image {unknown.id!r} has class {unknown.label!r}, not among {self.classes}")
            self.labels = torch.tensor([index[r.label] for r in self.records], dtype=torch.long)
        self.captions = [caption for record in self.records for caption in record.captions]
        self.image_of_caption = torch.tensor(
            [image for image, record in enumerate(self.records) for _ in record.captions], dtype=torch.long
        )
        self.tokens = preprocess.tokenize(self.captions)  # (captions, L)
        image_bytes = preprocess.image_size**2 * 3
        fits = len(self.records) * image_bytes <= cache_mib * 2**20
        self._cache: dict[int, np.ndarray] | None = {} if fits else None

    def __len__(self) -> int:
        return len(self.captions)

    def with_captions(self, captions: list[tuple[str, ...]]) -> PairDataset:
        """The same images (and image cache) with other captions: ``captions[i]`` for image ``i``."""
        if len(captions) != len(self.records):
            raise ValueError(f"{len(captions)} caption lists for {len(self.records)} images")
        other = copy.copy(self)
        other.records = [dataclasses.replace(r, captions=tuple(c)) for r, c in zip(self.records, captions)]
        other.captions = [caption for record in other.records for caption in record.captions]
        other.image_of_caption = torch.tensor(
            [image for image, record in enumerate(other.records) for _ in record.captions], dtype=torch.long
        )
        other.tokens = self.preprocess.tokenize(other.captions)
        return other

    def pixels(self, image: int) -> torch.Tensor:
        """The preprocessed image ``[3, H, W]`` of image ``image``."""
        rgb = self._cache.get(image) if self._cache is not None else None
        if rgb is None:
            rgb = self.preprocess.read_resized(self.root / self.records[image].image)
            if self._cache is not None:
                self._cache[image] = rgb
        return torch.from_numpy(self.preprocess.normalize(rgb))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        image = int(self.image_of_caption[index])
        return {"pixels": self.pixels(image), "tokens": self.tokens[index], "image": image, "index": index}


class ImageDataset(Dataset):
    """The images of a :class:`PairDataset` once each: ``{"pixels", "index"}`` (image index)."""

    def __init__(self, pairs: PairDataset) -> None:
        self.pairs = pairs

    def __len__(self) -> int:
        return len(self.pairs.records)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        return {"pixels": self.pairs.pixels(index), "index": index}


class CaptionDataset(Dataset):
    """The captions of a :class:`PairDataset`: ``{"tokens", "index"}`` (caption index)."""

    def __init__(self, pairs: PairDataset) -> None:
        self.pairs = pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        return {"tokens": self.pairs.tokens[index], "index": index}
