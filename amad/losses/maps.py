"""Shared helpers for losses on attention maps: input checks, row-wise KL and masked means.

All attention losses take probabilities shaped ``[B, H, q, k]`` and an optional boolean
``query_mask`` shaped ``[B, q]`` (True for real query rows). Half-precision inputs are computed
in float32; the hand-written paths (a frozen teacher) also switch an enclosing autocast off, the
plain autograd paths run their products in its dtype.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

REDUCTIONS = ("none", "mean", "sum")


def check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def reduce(per_item: Tensor, reduction: str) -> Tensor:
    """Apply ``reduction`` ("none" | "mean" | "sum") to a per-item loss tensor."""
    check_reduction(reduction)
    if reduction == "none":
        return per_item
    if reduction == "sum":
        return per_item.sum()
    return per_item.mean()


def loss_dtype(*tensors: Tensor) -> torch.dtype:
    """float64 if any input is float64, else float32 (half and bfloat16 are upcast)."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def check_maps(teacher: Tensor, student: Tensor, query_mask: Tensor | None) -> None:
    """Validate a teacher / student pair of attention maps and an optional query mask."""
    if teacher.dim() != 4 or student.dim() != 4:
        raise ValueError(
            "attention maps must be [B, H, q, k]; got teacher "
            f"{tuple(teacher.shape)} and student {tuple(student.shape)}"
        )
    t_batch, _, t_q, t_k = teacher.shape
    s_batch, _, s_q, s_k = student.shape
    if (t_batch, t_q, t_k) != (s_batch, s_q, s_k):
        raise ValueError(
            "teacher and student maps must agree on batch, query and key sizes; got teacher "
            f"{tuple(teacher.shape)} and student {tuple(student.shape)}"
        )
    if query_mask is not None:
        if query_mask.dtype != torch.bool:
            raise TypeError(f"query_mask must be a bool tensor, got {query_mask.dtype}")
        if tuple(query_mask.shape) != (t_batch, t_q):
            raise ValueError(f"query_mask must be [B, q] = {(t_batch, t_q)}, got {tuple(query_mask.shape)}")


def without_autocast(backward: Callable[..., Any]) -> Callable[..., Any]:
    """For a hand-written ``backward``: run it in the loss dtype even when ``loss.backward()`` is
    called inside an autocast region (the forwards are called with autocast off)."""

    @functools.wraps(backward)
    def wrapped(ctx: Any, *grads: Tensor) -> Any:
        with torch.autocast(grads[0].device.type, enabled=False):
            return backward(ctx, *grads)

    return wrapped


NORM_EPS = 1e-12
"""Floor of the product of two norms that divides a cosine (zero maps have cosine 0)."""


def masked_norms(maps: Tensor, query_mask: Tensor | None) -> Tensor:
    """Norm of each head's map over its valid query rows: ``[B, H, q, k]`` -> ``[B, H]``."""
    row_norms_sq = torch.linalg.vector_norm(maps, dim=-1).square()  # (B, H, q)
    if query_mask is not None:
        row_norms_sq = row_norms_sq * query_mask[:, None, :].to(maps.dtype)
    return row_norms_sq.sum(-1).sqrt()


def alignment_backward(
    grad_weights: Tensor,
    weights: Tensor,
    cosines: Tensor,
    products: Tensor,
    student_norm_sq: Tensor,
    temperature: float | Tensor,
) -> tuple[Tensor, Tensor, Tensor]:
    """The backward of AMAD's alignment ``a_ij = softmax_j(c_ij / tau)``, ``[..., Ht, Hs]``, with
    ``c_ij = <T_i, S_j> / D_ij`` and ``D_ij = max(|T_i| |S_j|, eps)`` (``products``: ``|T_i| |S_j|``).

    Given ``dL/da`` returns ``dL/dc``; ``dL/dc / D``, which times ``T_i`` is the gradient through
    the numerators; and ``[..., Hs]`` ``sum_i [D_ij unclamped] dL/dc_ij c_ij / |S_j|^2``, which times
    ``-S_j`` is the gradient through the norms (``student_norm_sq``: ``|S_j|^2``, floored by the caller).
    """
    grad_cosines = (grad_weights - (weights * grad_weights).sum(-1, keepdim=True)).mul_(weights).div_(temperature)
    norm_factor = (grad_cosines * cosines * (products >= NORM_EPS)).sum(-2) / student_norm_sq
    return grad_cosines, grad_cosines / products.clamp_min(NORM_EPS), norm_factor


def log_floor(dtype: torch.dtype) -> float:
    """Smallest probability whose log is taken as-is; smaller ones are clamped to it.

    ``sqrt(tiny)`` keeps ``log`` and its gradient ``1/p`` finite (about 1e19 in float32) for maps
    with exact zeros, and is far below any probability that changes a loss value.
    """
    return torch.finfo(dtype).tiny ** 0.5


def row_kl(target: Tensor, prediction: Tensor) -> Tensor:
    """``KL(target || prediction)`` along the last dim; terms with ``target == 0`` contribute 0.

    Args:
        target: probabilities ``[..., k]``.
        prediction: probabilities ``[..., k]``.

    Returns:
        ``[...]``, one divergence per row.
    """
    floor = log_floor(target.dtype)
    ratio = target / prediction.clamp_min(floor)  # one log of the ratio instead of two logs
    return torch.linalg.vecdot(ratio.clamp_min(floor).log(), target)


def masked_row_mean(per_row: Tensor, query_mask: Tensor | None) -> Tensor:
    """Mean over query rows (last dim) counting only rows where ``query_mask`` is True.

    Args:
        per_row: ``[B, H, q]``.
        query_mask: ``[B, q]`` bool or None (all rows valid).

    Returns:
        ``[B, H]``; a sample with no valid row gives 0.
    """
    if query_mask is None:
        return per_row.mean(-1)
    weights = query_mask.to(per_row.dtype)  # (B, q)
    valid_rows = weights.sum(-1).clamp_min(1.0)  # (B,)
    return (per_row * weights[:, None, :]).sum(-1) / valid_rows[:, None]


def row_mean_weights(query_mask: Tensor, dtype: torch.dtype) -> Tensor:
    """Weights ``[B, q]`` that turn a sum over query rows into :func:`masked_row_mean`."""
    weights = query_mask.to(dtype)  # (B, q)
    return weights / weights.sum(-1, keepdim=True).clamp_min(1.0)


def zero_masked_rows(maps: Tensor, query_mask: Tensor | None) -> Tensor:
    """Set the rows of padding queries to 0 so that flattened maps hold only valid rows.

    Args:
        maps: ``[B, H, q, k]``.
        query_mask: ``[B, q]`` bool (or 0 / 1 in the maps' dtype) or None.
    """
    if query_mask is None:
        return maps
    return maps * query_mask[:, None, :, None].to(maps.dtype)
