"""``sum_rows w_r KL(T_i[row] || sum_j a_ij S_j[row])`` with a hand-written backward.

This is the hot path of the default AMAD variant (Eq. 9). With plain autograd it takes two logs
and about a dozen passes over the teacher-sized ``[B, Ht, q, k]`` tensors, most of them into
freshly allocated (page-faulting) buffers. Here the forward writes the mixture once, turns it
into the ratio ``R = T / M`` in place and takes one log; since the per-item loss is linear in
each row's KL, the backward needs no teacher-sized temporaries: ``dL/dM = -g_i w_r R`` is folded
into two batched matmuls with ``R``. The teacher is not differentiated: callers use plain
autograd when it requires gradients.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from amad.losses.maps import log_floor


class _MixtureKL(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, teacher: Tensor, student: Tensor, weights: Tensor, row_weights: Tensor | None) -> Tensor:
        batch, teacher_heads, queries, keys = teacher.shape
        floor = log_floor(teacher.dtype)
        student_flat = student.reshape(batch, student.shape[1], queries * keys)  # (B, Hs, q*k)
        mixture = (weights @ student_flat).view(batch, teacher_heads, queries, keys)  # (B, Ht, q, k)
        # R = floor + T / M in M's memory: log(R) is finite where T == 0, and the floor (~1e-19)
        # changes no value or gradient measurably
        ratio = torch.addcdiv(mixture.new_tensor(floor), teacher, mixture.clamp_min_(floor), out=mixture)
        per_row = ratio.log().mul_(teacher).sum(-1)  # (B, Ht, q)
        ctx.save_for_backward(ratio, student_flat, weights, row_weights)
        if row_weights is None:
            return per_row.mean(-1)  # (B, Ht)
        return (per_row * row_weights[:, None, :]).sum(-1)  # (B, Ht)

    @staticmethod
    def backward(ctx: Any, grad_items: Tensor) -> tuple[None, Tensor, Tensor, None]:
        ratio, student_flat, weights, row_weights = ctx.saved_tensors
        batch, teacher_heads, queries, keys = ratio.shape
        ratio_flat = ratio.view(batch, teacher_heads, queries * keys)  # (B, Ht, q*k)
        # dL/dM[i, r, k] = scale_i * w_r * R[i, r, k]
        if row_weights is None:
            scale = -grad_items[..., None] / queries  # (B, Ht, 1)
            grad_weights = scale * (ratio_flat @ student_flat.transpose(1, 2))  # (B, Ht, Hs)
            grad_student = (weights * scale).transpose(1, 2) @ ratio_flat  # (B, Hs, q*k)
        else:
            scale = -grad_items[..., None]
            row_scale = row_weights.repeat_interleave(keys, dim=1)[:, None, :]  # (B, 1, q*k)
            grad_weights = scale * (ratio_flat @ (student_flat * row_scale).transpose(1, 2))
            grad_student = ((weights * scale).transpose(1, 2) @ ratio_flat).mul_(row_scale)
        return None, grad_student.view(batch, -1, queries, keys), grad_weights, None


def mixture_kl(teacher: Tensor, student: Tensor, weights: Tensor, row_weights: Tensor | None = None) -> Tensor:
    """Weighted mean over query rows of ``KL(T_i[row] || M_i[row])``, ``M_i = sum_j a_ij S_j``.

    Args:
        teacher: ``[B, Ht, q, k]`` probabilities; must not require gradients.
        student: ``[B, Hs, q, k]`` probabilities.
        weights: ``[B, Ht, Hs]`` mixture weights ``a``.
        row_weights: ``[B, q]`` weight of each query row (``mask / valid_rows``); None for the
            plain mean over rows.

    Returns:
        ``[B, Ht]``.
    """
    if teacher.requires_grad:
        raise ValueError("mixture_kl does not differentiate the teacher; detach it or use plain autograd")
    if row_weights is not None:
        row_weights = row_weights.to(teacher.dtype)
    return _MixtureKL.apply(teacher, student, weights, row_weights)
