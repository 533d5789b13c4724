"""Hidden-state distillation: MSE between teacher states and linearly projected student states."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class HiddenStateProjection(nn.Module):
    """Learned ``Linear(student_width -> teacher_width)`` used before the hidden-state MSE."""

    def __init__(self, student_width: int, teacher_width: int) -> None:
        super().__init__()
        self.linear = nn.Linear(student_width, teacher_width)

    def forward(self, student_hidden: Tensor) -> Tensor:
        """``[B, L, ds]`` -> ``[B, L, dt]``."""
        return self.linear(student_hidden)


def hidden_state_loss(
    teacher_hidden: Tensor,
    student_hidden: Tensor,
    projection: HiddenStateProjection,
    *,
    token_mask: Tensor | None = None,
) -> Tensor:
    """Mean squared error over (valid) tokens and features.

    Args:
        teacher_hidden: ``[B, L, dt]``.
        student_hidden: ``[B, L, ds]``.
        projection: maps ``ds`` to ``dt``.
        token_mask: ``[B, L]`` bool, True for real tokens.
    """
    projected = projection(student_hidden).float()  # (B, L, dt)
    squared = F.mse_loss(projected, teacher_hidden.float(), reduction="none").mean(-1)  # (B, L)
    if token_mask is None:
        return squared.mean()
    weights = token_mask.to(squared.dtype)
    return (squared * weights).sum() / weights.sum().clamp_min(1.0)
