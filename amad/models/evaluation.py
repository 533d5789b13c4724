"""Task-neutral evaluation helpers: named tensors over a dataset, and a model's size and cost."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset


def to_device(batch: dict, device: str | torch.device) -> dict:
    """``batch`` with its tensors on ``device`` (other items as they are)."""
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


@torch.no_grad()
def collect(
    function: Callable[[dict], dict[str, Any]],
    dataset: Dataset,
    *,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
) -> dict[str, torch.Tensor]:
    """``function(batch)``'s named tensors over the whole dataset, in order, on the CPU (floating
    point ones as float32): a predictor's predictions, or a graph's outputs."""
    parts: dict[str, list[torch.Tensor]] = {}
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        for name, value in function(to_device(batch, device)).items():
            value = torch.as_tensor(value)
            parts.setdefault(name, []).append((value.float() if value.is_floating_point() else value).cpu())
    return {name: torch.cat(values) for name, values in parts.items()}


def graph_outputs(
    graph: Callable[..., dict[str, Any]],
    dataset: Dataset,
    batch_inputs: Callable[[dict], tuple],
    *,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
) -> dict[str, torch.Tensor]:
    """A graph's named outputs ``{name: [N, ...]}`` over ``dataset`` (its inputs from each batch)."""
    return collect(lambda batch: graph(*batch_inputs(batch)), dataset, batch_size=batch_size, device=device)


def model_cost(model: torch.nn.Module, example_inputs: tuple) -> dict[str, float]:
    """Parameter count and GFLOPs per sample (``torch.utils.flop_counter`` on a batch of one)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(*example_inputs)
    model.train(was_training)
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "gflops": counter.get_total_flops() / 1e9,
    }


def evaluate_model(
    task, model: torch.nn.Module, dataset: Dataset, *, settings=None, device: str | torch.device = "cpu"
) -> dict:
    """The task's evaluation of a torch model through its predictor (in eval mode for the pass, then
    restored); ``settings``: the ``evaluate`` section (see ``Task.evaluate``)."""
    was_training = model.training
    model.eval()
    try:
        return task.evaluate(task.predictor(task.graphs(model)), dataset, settings=settings, device=device)
    finally:
        model.train(was_training)
