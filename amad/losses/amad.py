"""Attention Map Alignment Distillation (AMAD) losses.

Every teacher head ``i`` is matched to a mixture of *all* student heads, weighted by
``a_ij = softmax_j(cos(t_i, s_j) / tau)``, so no teacher head is discarded and the loss is
invariant to permuting student heads. Variants (paper numbering):

* ``kl`` (Eq. 9, default): ``M_i = sum_j a_ij S_j``; loss = mean over valid query rows of
  ``KL(T_i[row] || M_i[row])``.
* ``mse`` (Eq. 4-6): ``|| t_i/|t_i| - sum_j a_ij s_j/|s_j| ||^2`` on flattened maps.
* ``token`` (Eq. 12): as ``kl`` with weights computed per query row.
* ``projection`` (Eq. 10-11): student maps pass through a learned ``ReLU(S W^T + b)``
  (:class:`AttentionProjection`) before the ``mse`` alignment; for small maps only.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from amad.losses.maps import (
    NORM_EPS,
    check_maps,
    loss_dtype,
    masked_norms,
    masked_row_mean,
    reduce,
    row_kl,
    row_mean_weights,
    zero_masked_rows,
)
from amad.losses.mixture_kl import mixture_kl
from amad.losses.options import AMAD_VARIANTS, MAX_PROJECTION_FEATURES
from amad.losses.token_kl import token_mixture_kl


def _check_temperature(temperature: float | Tensor) -> None:
    if isinstance(temperature, Tensor):
        if temperature.numel() != 1:
            raise ValueError(f"temperature must be a scalar, got shape {tuple(temperature.shape)}")
        return
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


def _head_cosines(teacher: Tensor, student: Tensor, query_mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Cosine of every teacher head with every student head, on maps flattened over valid rows.

    Only the (smaller) student is copied to zero its padding rows; the teacher is read in place.

    Args:
        teacher: ``[B, Ht, q, k]``.
        student: ``[B, Hs, q, k]``.
        query_mask: ``[B, q]`` bool or None.

    Returns:
        cosines ``[B, Ht, Hs]``, the masked, flattened student ``[B, Hs, q*k]`` and the norms of
        teacher ``[B, Ht]`` and student ``[B, Hs]`` heads over valid rows.
    """
    student_flat = zero_masked_rows(student, query_mask).flatten(2)  # (B, Hs, q*k)
    # student-major product: its backward writes the student's gradient contiguously
    dots = (student_flat @ teacher.flatten(2).transpose(1, 2)).transpose(1, 2)  # (B, Ht, Hs)
    teacher_norm = masked_norms(teacher, query_mask)  # (B, Ht)
    student_norm = student_flat.norm(dim=-1)  # (B, Hs)
    cosines = dots / (teacher_norm[:, :, None] * student_norm[:, None, :]).clamp_min(NORM_EPS)
    return cosines, student_flat, teacher_norm, student_norm


def alignment_weights(
    teacher: Tensor,
    student: Tensor,
    *,
    temperature: float | Tensor = 1.0,
    query_mask: Tensor | None = None,
) -> Tensor:
    """Soft alignment of teacher heads to student heads.

    ``w_ij = cos(t_i, s_j)`` on maps flattened over their valid query rows, and
    ``a_ij = softmax_j(w_ij / temperature)``. Differentiable in both inputs and the temperature.

    Args:
        teacher: teacher attention probabilities ``[B, Ht, q, k]``.
        student: student attention probabilities ``[B, Hs, q, k]``.
        temperature: softmax temperature ``tau`` (> 0); a float or a scalar tensor.
        query_mask: ``[B, q]`` bool, True for real query rows; None means all rows.

    Returns:
        ``[B, Ht, Hs]``; each row sums to 1 over student heads.
    """
    check_maps(teacher, student, query_mask)
    _check_temperature(temperature)
    dtype = loss_dtype(teacher, student)
    cosines, *_ = _head_cosines(teacher.to(dtype), student.to(dtype), query_mask)
    return torch.softmax(cosines / temperature, dim=-1)


def token_alignment_weights(
    teacher: Tensor,
    student: Tensor,
    *,
    temperature: float | Tensor = 1.0,
) -> Tensor:
    """Per-query-row alignment weights of the ``token`` variant (Eq. 12).

    Args:
        teacher: ``[B, Ht, q, k]``.
        student: ``[B, Hs, q, k]``.

    Returns:
        ``[B, q, Ht, Hs]``: ``softmax_j(cos(T_i[row], S_j[row]) / temperature)``.
    """
    check_maps(teacher, student, None)
    _check_temperature(temperature)
    dtype = loss_dtype(teacher, student)
    teacher, student = teacher.to(dtype), student.to(dtype)
    dots = torch.einsum("bhqk,bjqk->bqhj", teacher, student)  # (B, q, Ht, Hs)
    teacher_norm = teacher.norm(dim=-1).transpose(1, 2)  # (B, q, Ht)
    student_norm = student.norm(dim=-1).transpose(1, 2)  # (B, q, Hs)
    cosines = dots / (teacher_norm[..., :, None] * student_norm[..., None, :]).clamp_min(NORM_EPS)
    return torch.softmax(cosines / temperature, dim=-1)


class AttentionProjection(nn.Module):
    """Learned map projection ``ReLU(S W^T + b)`` of the ``projection`` variant (Eq. 10-11).

    Acts on flattened maps of ``num_features = q * k`` values, so it holds ``(q*k)^2`` weights:
    meant for small maps only (``q * k <= max_features``).
    """

    def __init__(self, num_features: int, *, max_features: int = MAX_PROJECTION_FEATURES) -> None:
        super().__init__()
        if num_features > max_features:
            raise ValueError(
                f"the projection variant is for small maps: q*k = {num_features} > {max_features} "
                "(it learns a (q*k) x (q*k) matrix); use variant 'kl', 'mse' or 'token' instead"
            )
        self.linear = nn.Linear(num_features, num_features)
        nn.init.eye_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, maps: Tensor) -> Tensor:
        """``[B, H, q, k]`` -> ``[B, H, q, k]`` (non-negative, not row-stochastic)."""
        flat = maps.flatten(2).to(self.linear.weight.dtype)  # (B, H, q*k)
        return torch.relu(self.linear(flat)).view_as(maps)


def _mse_alignment(
    teacher: Tensor, student: Tensor, temperature: float | Tensor, query_mask: Tensor | None
) -> tuple[Tensor, Tensor]:
    """Eq. 4-6 without materialising the mixture.

    ``||t^ - sum_j a_j s^_j||^2 = |t^|^2 - 2 sum_j a_j cos_j + a^T G a`` with ``G = S^ S^T``.
    Returns (per-item loss ``[B, Ht]``, weights ``[B, Ht, Hs]``).
    """
    cosines, student_flat, teacher_norm, student_norm = _head_cosines(teacher, student, query_mask)
    weights = torch.softmax(cosines / temperature, dim=-1)  # (B, Ht, Hs)
    student_norm = student_norm.clamp_min(NORM_EPS)  # (B, Hs)
    student_gram = student_flat @ student_flat.transpose(1, 2)  # (B, Hs, Hs)
    student_gram = student_gram / (student_norm[:, :, None] * student_norm[:, None, :])
    teacher_is_nonzero = (teacher_norm > 0).to(teacher.dtype)  # (B, Ht)
    mixture_sq = ((weights @ student_gram) * weights).sum(-1)  # (B, Ht)
    per_item = teacher_is_nonzero - 2 * (weights * cosines).sum(-1) + mixture_sq
    return per_item.clamp_min(0.0), weights


def amad_loss_and_weights(
    teacher: Tensor,
    student: Tensor,
    *,
    variant: str = "kl",
    temperature: float | Tensor = 1.0,
    query_mask: Tensor | None = None,
    projection: AttentionProjection | None = None,
) -> tuple[Tensor, Tensor]:
    """AMAD per (sample, teacher head) loss ``[B, Ht]`` and the weights ``[B, Ht, Hs]`` it used.

    For ``token`` the weights are the per-row weights averaged over valid query rows. The weights
    are for inspection: with a frozen teacher (the hand-written ``kl`` and ``token`` paths) they
    carry no gradient; the loss does. See :func:`amad_loss` for the arguments.
    """
    if variant not in AMAD_VARIANTS:
        raise ValueError(f"AMAD variant must be one of {AMAD_VARIANTS}, got {variant!r}")
    check_maps(teacher, student, query_mask)
    _check_temperature(temperature)
    dtype = loss_dtype(teacher, student)
    teacher, student = teacher.to(dtype), student.to(dtype)

    if variant == "kl":
        if not teacher.requires_grad:
            return mixture_kl(teacher, student, temperature, query_mask)
        cosines, *_ = _head_cosines(teacher, student, query_mask)
        weights = torch.softmax(cosines / temperature, dim=-1)  # (B, Ht, Hs)
        mixture = (weights @ student.flatten(2)).view_as(teacher)  # (B, Ht, q, k)
        return masked_row_mean(row_kl(teacher, mixture), query_mask), weights

    if variant == "token":
        if not teacher.requires_grad and not (isinstance(temperature, Tensor) and temperature.requires_grad):
            row_weights = None if query_mask is None else row_mean_weights(query_mask, teacher.dtype)
            return token_mixture_kl(teacher, student, float(temperature), row_weights)
        row_weights = token_alignment_weights(teacher, student, temperature=temperature)  # (B, q, Ht, Hs)
        mixture = torch.einsum("bqhj,bjqk->bhqk", row_weights, student)  # (B, Ht, q, k)
        per_item = masked_row_mean(row_kl(teacher, mixture), query_mask)
        if query_mask is None:
            return per_item, row_weights.mean(1)
        row_is_valid = query_mask.to(dtype)  # (B, q)
        valid_rows = row_is_valid.sum(-1).clamp_min(1.0)[:, None, None]  # (B, 1, 1)
        return per_item, torch.einsum("bqhj,bq->bhj", row_weights, row_is_valid) / valid_rows

    if variant == "projection":
        if projection is None:
            raise ValueError("variant 'projection' needs an AttentionProjection module (projection=...)")
        student = projection(student).to(dtype)
    return _mse_alignment(teacher, student, temperature, query_mask)


def amad_loss(
    teacher: Tensor,
    student: Tensor,
    *,
    variant: str = "kl",
    temperature: float | Tensor = 1.0,
    query_mask: Tensor | None = None,
    reduction: str = "mean",
    projection: AttentionProjection | None = None,
) -> Tensor:
    """AMAD loss between one layer's teacher and student attention maps.

    Args:
        teacher: teacher attention probabilities ``[B, Ht, q, k]`` (rows sum to 1).
        student: student attention probabilities ``[B, Hs, q, k]``.
        variant: ``"kl"`` (default), ``"mse"``, ``"token"`` or ``"projection"``.
        temperature: alignment softmax temperature (float or scalar tensor, e.g. learned).
        query_mask: ``[B, q]`` bool, True for real query rows; padding rows do not contribute.
        reduction: ``"mean"`` (mean of the ``[B, Ht]`` tensor), ``"sum"`` or ``"none"``.
        projection: the learned :class:`AttentionProjection`, required by ``"projection"``.

    Returns:
        A scalar, or ``[B, Ht]`` with ``reduction="none"``.
    """
    per_item, _ = amad_loss_and_weights(
        teacher,
        student,
        variant=variant,
        temperature=temperature,
        query_mask=query_mask,
        projection=projection,
    )
    return reduce(per_item, reduction)
