"""Task-neutral evaluation helpers: outputs over a dataset, and a model's size and cost."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.data import DataLoader, Dataset


@torch.no_grad()
def predict_outputs(
    forward: Callable[..., torch.Tensor],
    dataset: Dataset,
    model_inputs: Callable[[dict], tuple],
    *,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """Outputs ``[N, ...]`` (float32, on the CPU) of ``forward(*inputs)`` over the whole dataset, in order."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    outputs = [
        forward(*(x.to(device) for x in model_inputs(batch))).float().cpu()  # (batch, ...)
        for batch in loader
    ]
    return torch.cat(outputs)


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
    """The task's evaluation of a torch model (in eval mode for the pass, then restored); ``settings``:
    the ``evaluate`` section (see ``Task.evaluate``)."""
    was_training = model.training
    model.eval()
    try:
        return task.evaluate(task.graphs(model), dataset, settings=settings, device=device)
    finally:
        model.train(was_training)
