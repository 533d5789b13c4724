"""Per-head statistics of the teacher that decide which heads a student inherits.

* **Importance** (Michel et al. 2019, "Are Sixteen Heads Really Better than One?"): multiply head
  ``h``'s output by a mask ``xi_h``; its importance is ``|dL / d xi_h|`` at ``xi = 1``, summed over
  batches of training data and normalised per layer (L2). Scaling a head's output by ``xi_h`` is
  scaling the output projection's columns of that head, so ``dL / d xi_h = sum over the head's
  columns of W_o * dL/dW_o``: one backward pass gives every head of every layer, whatever the
  attention implementation.
* **Map similarity**: the cosine between two heads' attention maps over the same batches (the
  similarity AMAD aligns with), ``[H, H]`` per module; ``merge`` and ``concat`` group similar heads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn

from amad.distill.capture import capture_attention
from amad.student_init.inherit import attention_weights


def head_importance(
    model: nn.Module, paths: list[str], batches: Iterable[dict], loss: Callable[[nn.Module, dict], Tensor]
) -> dict[str, Tensor]:
    """Importance ``[H]`` per attention module in ``paths`` (each layer normalised to unit L2 norm)."""
    outputs = {path: model.get_parameter(attention_weights(model, path).output[0]) for path in paths}
    heads = {path: attention_weights(model, path).heads for path in paths}
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    was_training = model.training
    model.eval().requires_grad_(False)
    for weight in outputs.values():
        weight.requires_grad_(True)
    totals = {path: torch.zeros(heads[path], dtype=torch.float64) for path in paths}
    try:
        for batch in batches:
            for weight in outputs.values():
                weight.grad = None
            loss(model, batch).backward()
            for path, weight in outputs.items():
                per_channel = (weight.detach() * weight.grad).sum(0).double()  # (A,): d loss / d column scale
                totals[path] += per_channel.view(heads[path], -1).sum(-1).abs().cpu()
    finally:
        for name, parameter in model.named_parameters():
            parameter.requires_grad_(flags[name])
            parameter.grad = None
        model.train(was_training)
    return {path: total / total.norm().clamp(min=1e-12) for path, total in totals.items()}


@torch.no_grad()
def map_similarity(model: nn.Module, paths: list[str], batches: Iterable[tuple]) -> dict[str, Tensor]:
    """Cosine ``[H, H]`` between the heads' attention maps of each module over ``batches`` (model inputs)."""
    was_training = model.training
    model.eval()
    grams: dict[str, Tensor] = {}
    try:
        for inputs in batches:
            with capture_attention(model, paths) as capture:
                model(*inputs)
            for path in paths:
                probs = capture.probs(path).double()  # (B, H, q, k)
                flat = probs.transpose(0, 1).reshape(probs.shape[1], -1).cpu()  # (H, B*q*k)
                grams[path] = grams.get(path, 0) + flat @ flat.t()
    finally:
        model.train(was_training)
    similarity = {}
    for path, gram in grams.items():
        norms = gram.diagonal().sqrt().clamp(min=1e-12)
        similarity[path] = gram / norms[:, None] / norms[None, :]
    return similarity
