"""VQA accuracy (soft VQA accuracy; exact match for 1-answer data), overall and per question family."""

from __future__ import annotations

from collections import defaultdict

import torch

from amad.tasks.vqa.answers import vqa_accuracy
from amad.tasks.vqa.dataset import VQADataset


def accuracy_report(logits: torch.Tensor, dataset: VQADataset) -> dict[str, float | dict[str, float]]:
    """``{"accuracy": overall, "breakdown": {family: accuracy}}`` from logits ``[N, A]``."""
    predictions = logits.argmax(-1).tolist()
    per_family: dict[str, list[float]] = defaultdict(list)
    scores = []
    for record, prediction in zip(dataset.records, predictions):
        score = vqa_accuracy(dataset.answers[prediction], record.answers)
        scores.append(score)
        per_family[record.family or "all"].append(score)
    return {
        "accuracy": sum(scores) / len(scores),
        "breakdown": {family: sum(s) / len(s) for family, s in sorted(per_family.items())},
    }
