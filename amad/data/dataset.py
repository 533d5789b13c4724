"""The torch dataset over a prepared manifest folder."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Dataset

from amad.data.answers import answer_scores
from amad.data.manifest import Record, read_manifest
from amad.preprocess import Preprocess


class VQADataset(Dataset):
    """Samples ``{"pixels" [3,H,W], "tokens" [L], "targets" [A], "index"}`` of one split.

    Questions are tokenised once up front; images are read lazily. ``targets`` holds the VQA
    soft score of every answer in the vocabulary (all zero when no answer is in it).

    Args:
        folder: a manifest folder (``data/prepared``).
        split: ``train``, ``val`` or ``test``; or a path to any manifest file.
        preprocess: the model's preprocessing.
        answers: the answer vocabulary (index -> answer).
    """

    def __init__(self, folder: str | Path, split: str, preprocess: Preprocess, answers: list[str]) -> None:
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

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        targets = torch.zeros(len(self.answers))
        for answer_index, score in self.scores[index]:
            targets[answer_index] = score
        return {
            "pixels": self.preprocess.load_image(self.root / self.records[index].image),
            "tokens": self.tokens[index],
            "targets": targets,
            "index": index,
        }
