"""Accuracy of a model on a dataset (VQA soft accuracy; exact match for 1-answer data)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import torch
from torch.utils.data import DataLoader

from amad.data.answers import vqa_accuracy
from amad.data.dataset import VQADataset


@torch.no_grad()
def predict_logits(
    forward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    dataset: VQADataset,
    *,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """Logits ``[N, A]`` of ``forward(pixels, tokens)`` over the whole dataset, in order."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    outputs = [forward(batch["pixels"].to(device), batch["tokens"].to(device)).float().cpu() for batch in loader]
    return torch.cat(outputs)


def accuracy_report(logits: torch.Tensor, dataset: VQADataset) -> dict[str, float | dict[str, float]]:
    """``{"accuracy": overall, "families": {family: accuracy}}`` from logits ``[N, A]``."""
    predictions = logits.argmax(-1).tolist()
    per_family: dict[str, list[float]] = defaultdict(list)
    scores = []
    for record, prediction in zip(dataset.records, predictions):
        score = vqa_accuracy(dataset.answers[prediction], record.answers)
        scores.append(score)
        per_family[record.family or "all"].append(score)
    return {
        "accuracy": sum(scores) / len(scores),
        "families": {family: sum(s) / len(s) for family, s in sorted(per_family.items())},
    }


def model_cost(model: torch.nn.Module, image_size: int, context_length: int) -> dict[str, float]:
    """Parameter count and GFLOPs per sample (``torch.utils.flop_counter``, batch of one)."""
    from torch.utils.flop_counter import FlopCounterMode

    pixels = torch.zeros(1, 3, image_size, image_size)
    tokens = torch.zeros(1, context_length, dtype=torch.long)
    tokens[0, :3] = torch.tensor([49406, 320, 49407])  # start, one word, end
    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(pixels, tokens)
    model.train(was_training)
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "gflops": counter.get_total_flops() / 1e9,
    }


def evaluate_model(model: torch.nn.Module, dataset: VQADataset, *, device: str | torch.device = "cpu") -> dict:
    """Accuracy report of a torch model (put in eval mode for the pass, then restored)."""
    was_training = model.training
    model.eval()
    try:
        return accuracy_report(predict_logits(model, dataset, device=device), dataset)
    finally:
        model.train(was_training)
