"""The torch dataset over a prepared manifest folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from amad.data.preprocess import Preprocess
from amad.tasks.vqa.answers import answer_scores
from amad.tasks.vqa.manifest import Record, read_manifest


class VQADataset(Dataset):
    """Samples ``{"pixels" [3,H,W], "tokens" [L], "targets" [A], "index"}`` of one split.

    Questions are tokenised once up front; images are read lazily and, while the decoded images
    fit in ``cache_mib``, kept in memory (as resized uint8) so later epochs skip the decoding
    (with ``num_workers > 0`` each loader worker holds its own cache for its lifetime).
    ``targets`` holds the VQA soft score of every answer in the vocabulary (all zero when no
    answer is in it).

    Args:
        folder: a manifest folder (``data/prepared``).
        split: ``train``, ``val`` or ``test``; or a path to any manifest file.
        preprocess: the model's preprocessing.
        answers: the answer vocabulary (index -> answer).
        cache_mib: memory for decoded images; the split is cached only if all of it fits.
    """

    def __init__(
        self, folder: str | Path, split: str, preprocess: Preprocess, answers: list[str], *, cache_mib: int = 1024
    ) -> None:
        manifest = Path(split) if split.endswith(".jsonl") else Path(folder) / f"{split}.jsonl"
        self.root = manifest.parent
        self.records: list[Record] = read_manifest(manifest)
        self.preprocess = preprocess
        self.answers = answers
        self.tokens = preprocess.tokenize([r.question for r in self.records])  # (N, L)
        index = {answer: i for i, answer in enumerate(answers)}
        self.scores = [
            [(index[answer], score) for answer, score in answer_scores(r.answers).items() if answer in index]
            for r in self.records
        ]
        image_bytes = preprocess.image_size**2 * 3
        self._cache: dict[int, np.ndarray] | None = {} if len(self.records) * image_bytes <= cache_mib * 2**20 else None

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        targets = torch.zeros(len(self.answers))
        for answer_index, score in self.scores[index]:
            targets[answer_index] = score
        rgb = self._cache.get(index) if self._cache is not None else None
        if rgb is None:
            rgb = self.preprocess.read_resized(self.root / self.records[index].image)
            if self._cache is not None:
                self._cache[index] = rgb
        return {
            "pixels": torch.from_numpy(self.preprocess.normalize(rgb)),
            "tokens": self.tokens[index],
            "targets": targets,
            "index": index,
        }
