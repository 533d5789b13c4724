"""The torch dataset over a prepared translation folder: one sample per sentence pair."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from amad.data.preprocess import Preprocess
from amad.tasks.translation.sources import SentencePair, read_manifest


def derangement(count: int, seed: int) -> np.ndarray:
    """A permutation of ``range(count)`` that moves every position (``count`` >= 2), seeded."""
    if count < 2:
        raise ValueError(f"shuffling images needs at least 2 sentences, got {count}")
    order = np.random.default_rng(seed).permutation(count)
    return np.roll(order, 1)[np.argsort(order)]  # each position takes the image of the one before it in ``order``


def source_truncation(dataset: TranslationDataset, split: str, limit: float) -> int:
    """Source sentences of ``dataset`` longer than the context by its source tokenizer; DataError
    above ``limit`` (a fraction), naming the split and the longest; a note on stderr otherwise."""
    import sys

    from amad.errors import DataError

    side = dataset.preprocess.source
    counts = [(side.token_count(pair.source), pair.source) for pair in dataset.pairs]
    cut = sum(count > side.context_length for count, _ in counts)
    if not cut:
        return 0
    longest = max(counts)
    message = (
        f"{cut} of {len(counts)} {split} source sentences ({cut / len(counts):.1%}) are longer than "
        f"{side.context_length} tokens of the source encoder's tokenizer; the longest ({longest[0]} tokens): "
        f"{longest[1][:80]!r}"
    )
    if cut / len(counts) > limit:
        raise DataError(f"data.max_truncated: {message}, above the {limit:.1%} allowed. Raise data.context_length")
    print(f"note: {message}: cut, keeping the end token", file=sys.stderr)
    return cut


class TranslationDataset(Dataset):
    """Samples ``{"pixels" [3,H,W], "source" [L], "target" [L], "index"}``, one per sentence pair of one
    split, in file order. Sentences are tokenised once up front; images are read lazily and, while the
    split's decoded images fit in ``cache_mib``, kept in memory as resized uint8.

    Args:
        folder: a prepared folder (``data/prepared``).
        split: ``train``, ``val`` or ``test``; or a path to any manifest.
        preprocess: the model's preprocessing (its tokenizer is the joint vocabulary).
        target_language: the target side's language code (sacreBLEU's ``trg_lang``).
        cache_mib: memory for decoded images; the split is cached only if all of it fits.
    """

    def __init__(
        self, folder: str | Path, split: str, preprocess: Preprocess, *, target_language: str, cache_mib: int = 2048
    ) -> None:
        path = Path(split) if split.endswith(".jsonl") else Path(folder) / f"{split}.jsonl"
        self.root = path.parent
        self.pairs: list[SentencePair] = read_manifest(path)
        self.preprocess = preprocess
        self.target_language = target_language  # how the metrics tokenise the references
        self.source = preprocess.source.tokenize([pair.source for pair in self.pairs])
        self.target = preprocess.tokenize([pair.target for pair in self.pairs])
        self.images = [pair.image for pair in self.pairs]  # the split's images, one per pair of the file
        self.image_of = np.arange(len(self.pairs))  # the image each sample shows
        fits = len(self.pairs) * preprocess.image_size**2 * 3 <= cache_mib * 2**20
        self._cache: dict[int, np.ndarray] | None = {} if fits else None

    def __len__(self) -> int:
        return len(self.pairs)

    def with_targets(self, targets: list[tuple[str, ...]]) -> TranslationDataset:
        """The same sources and images with other targets: ``targets[i]`` (one or more) for pair ``i``,
        each a sample of its own (sequence-level distillation's ``add`` keeps the reference too)."""
        if len(targets) != len(self.pairs):
            raise ValueError(f"{len(targets)} target lists for {len(self.pairs)} sentence pairs")
        rows = [(index, text) for index, texts in enumerate(targets) for text in texts]
        other = copy.copy(self)
        other.pairs = [dataclasses.replace(self.pairs[index], target=text) for index, text in rows]
        keep = torch.as_tensor([index for index, _ in rows], dtype=torch.long)
        other.source = self.source[keep]
        other.target = self.preprocess.tokenize([text for _, text in rows])
        other.image_of = self.image_of[keep.numpy()]
        return other

    def with_shuffled_images(self, seed: int) -> TranslationDataset:
        """The same sentences, each shown another sentence's image (a seeded derangement): the
        adversarial evaluation's input."""
        other = copy.copy(self)
        other.image_of = self.image_of[derangement(len(self.pairs), seed)]
        return other

    def pixels(self, image: int) -> torch.Tensor:
        """The preprocessed image ``[3, H, W]`` of image ``image`` (the file's pair ``image``)."""
        rgb = self._cache.get(image) if self._cache is not None else None
        if rgb is None:
            rgb = self.preprocess.read_resized(self.root / self.images[image])
            if self._cache is not None:
                self._cache[image] = rgb
        return torch.from_numpy(self.preprocess.normalize(rgb))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        return {
            "pixels": self.pixels(int(self.image_of[index])),
            "source": self.source[index],
            "target": self.target[index],
            "index": index,
        }
