"""``sum_rows w_r KL(T_i[row] || sum_j a_ij S_j[row])`` with a hand-written backward.

This is the hot path of the default AMAD variant (Eq. 9). With plain autograd it takes two logs
and about a dozen passes over the teacher-sized ``[B, Ht, q, k]`` tensors, most of them into
freshly allocated (page-faulting) buffers. Here a cache-sized chunk of samples at a time gets its
mixture, turned into the ratio ``R = T / M`` in place and reduced, so the teacher is read from
memory once and nothing teacher-sized is allocated or kept; the backward recomputes each chunk's
ratio and, since the per-item loss is linear in each row's KL, folds ``dL/dM = -g_i w_r R`` into
two batched matmuls with it. The teacher is not differentiated: callers use plain autograd when
it requires gradients.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from amad.losses.maps import log_floor

CHUNK_ELEMENTS = 1 << 20
"""Teacher-map elements handled at a time (at least one sample): the chunk's mixture, ratio and
log stay in the CPU's cache."""


def _chunks(teacher: Tensor) -> list[slice]:
    per_sample = teacher[0].numel()
    step = max(1, CHUNK_ELEMENTS // per_sample)
    return [slice(start, start + step) for start in range(0, teacher.shape[0], step)]


def _ratio(teacher: Tensor, student_flat: Tensor, weights: Tensor) -> Tensor:
    """``floor + T / M`` ``[n, Ht, q*k]`` with ``M = a S``, in the mixture's memory: its log is finite
    where ``T == 0``, and the floor (~1e-19) changes no value or gradient measurably."""
    floor = log_floor(teacher.dtype)
    mixture = weights @ student_flat  # (n, Ht, q*k)
    return torch.addcdiv(mixture.new_tensor(floor), teacher.flatten(2), mixture.clamp_min_(floor), out=mixture)


class _MixtureKL(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, teacher: Tensor, student: Tensor, weights: Tensor, row_weights: Tensor | None) -> Tensor:
        batch, teacher_heads, queries, keys = teacher.shape
        student_flat = student.reshape(batch, student.shape[1], queries * keys)  # (B, Hs, q*k)
        per_row = teacher.new_empty(batch, teacher_heads, queries)
        for rows in _chunks(teacher):
            log_ratio = _ratio(teacher[rows], student_flat[rows], weights[rows]).log_()
            per_row[rows] = torch.linalg.vecdot(log_ratio.view(-1, teacher_heads, queries, keys), teacher[rows])
        ctx.save_for_backward(teacher, student_flat, weights, row_weights)
        if row_weights is None:
            return per_row.mean(-1)  # (B, Ht)
        return (per_row * row_weights[:, None, :]).sum(-1)  # (B, Ht)

    @staticmethod
    def backward(ctx: Any, grad_items: Tensor) -> tuple[None, Tensor, Tensor, None]:
        teacher, student_flat, weights, row_weights = ctx.saved_tensors
        batch, _, queries, keys = teacher.shape
        grad_student = torch.empty_like(student_flat)  # (B, Hs, q*k)
        grad_weights = torch.empty_like(weights)  # (B, Ht, Hs)
        # dL/dM[i, r, k] = scale_i * w_r * R[i, r, k]
        scale = -grad_items[..., None] / (queries if row_weights is None else 1)  # (B, Ht, 1)
        for rows in _chunks(teacher):
            ratio = _ratio(teacher[rows], student_flat[rows], weights[rows])  # (n, Ht, q*k)
            students = student_flat[rows]
            if row_weights is not None:
                row_scale = row_weights[rows].repeat_interleave(keys, dim=1)[:, None, :]  # (n, 1, q*k)
                students = students * row_scale
            grad_weights[rows] = scale[rows] * (ratio @ students.transpose(1, 2))  # (n, Ht, Hs)
            grad_student[rows] = (weights[rows] * scale[rows]).transpose(1, 2) @ ratio  # (n, Hs, q*k)
            if row_weights is not None:
                grad_student[rows] *= row_scale
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
