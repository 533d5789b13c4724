"""AMAD's ``token`` variant (Eq. 12) with a hand-written backward; the large products sample by sample.

Per query row ``r`` the alignment weights are ``a_rij = softmax_j(cos(T_i[r], S_j[r]) / tau)`` and
the loss ``sum_r w_r KL(T_i[r] || sum_j a_rij S_j[r])``. With plain autograd this takes about
twenty passes over whole ``[B, H, q, k]`` tensors (einsum copies, divisions, ``where``s of the
clamps, their backward twins). Here each sample's maps (a couple of MiB) are handled while they
are in cache, as batched matrix products over its query rows; the small per-row work (norms,
cosines, alignment weights and their gradients, ``[B, q, Ht, Hs]``) is done for all samples at
once. The forward keeps each sample's ratio ``T / M`` (one teacher-sized tensor in all, instead of
recomputing the mixture) for the backward, which applies::

    dL/dM_i   = -g_i w_r T_i / M_i                      (M: the mixture, g: incoming gradient)
    dL/da_ij  = <dL/dM_i, S_j>
    dL/dc_ij  = a_ij (dL/da_ij - sum_j' a_ij' dL/da_ij') / tau
    dL/dS_j   = sum_i a_ij dL/dM_i + sum_i dL/dc_ij (T_i / D_ij - [D_ij unclamped] c_ij S_j / |S_j|^2)

with ``c_ij = <T_i, S_j> / D_ij`` and ``D_ij = max(|T_i| |S_j|, eps)``. The teacher is not
differentiated, nor is the temperature: callers use plain autograd when either needs a gradient.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from amad.losses.maps import log_floor

NORM_EPS = 1e-12


def _alignment(teacher: Tensor, student: Tensor, temperature: float) -> dict[str, Tensor]:
    """Per-row alignment of every sample: ``teacher [B, Ht, q, k]``, ``student [B, Hs, q, k]`` ->
    row-major ``[B, q, Ht, Hs]`` cosines, clamped denominators and weights (small tensors; only the
    dot products go sample by sample)."""
    teacher_norm = torch.linalg.vector_norm(teacher, dim=-1).transpose(1, 2)  # (B, q, Ht)
    student_norm = torch.linalg.vector_norm(student, dim=-1).transpose(1, 2)  # (B, q, Hs)
    batch, teacher_heads, queries, _ = teacher.shape
    dots = teacher.new_empty(batch, queries, teacher_heads, student.shape[1])
    for item in range(batch):
        torch.bmm(teacher[item].transpose(0, 1), student[item].permute(1, 2, 0), out=dots[item])  # (q, Ht, Hs)
    products = teacher_norm[..., None] * student_norm[..., None, :]
    denominator = products.clamp_min(NORM_EPS)
    cosines = dots.div_(denominator)
    return {
        "student_norm": student_norm,
        "denominator": denominator,
        "unclamped": products >= NORM_EPS,
        "cosines": cosines,
        "weights": torch.softmax(cosines / temperature, dim=-1),
    }


def _ratio(teacher: Tensor, student: Tensor, weights: Tensor, out: Tensor) -> Tensor:
    """One sample's ``floor + T / M`` ``[q, Ht, k]`` with the mixture ``M_i = sum_j a_ij S_j`` (as in
    mixture_kl: its log is finite where ``T == 0``), written to ``out``."""
    torch.bmm(weights, student.transpose(0, 1), out=out)  # the mixture, (q, Ht, k)
    floor = log_floor(teacher.dtype)
    return torch.addcdiv(out.new_tensor(floor), teacher.transpose(0, 1), out.clamp_min_(floor), out=out)


class _TokenMixtureKL(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, teacher: Tensor, student: Tensor, row_weights: Tensor, temperature: float
    ) -> tuple[Tensor, Tensor]:
        batch, teacher_heads, queries, keys = teacher.shape
        alignment = _alignment(teacher, student, temperature)
        weights = alignment["weights"]  # (B, q, Ht, Hs)
        ratios = teacher.new_empty(batch, queries, teacher_heads, keys)  # floor + T / M, for the backward
        log_ratio = teacher.new_empty(queries, teacher_heads, keys)
        per_row = teacher.new_empty(batch, queries, teacher_heads)
        for item in range(batch):
            ratio = _ratio(teacher[item], student[item], weights[item], out=ratios[item])
            torch.linalg.vecdot(torch.log(ratio, out=log_ratio), teacher[item].transpose(0, 1), out=per_row[item])
        ctx.save_for_backward(teacher, student, row_weights, ratios)
        ctx.alignment = alignment  # small: [B, q, Ht, Hs]
        ctx.temperature = temperature
        mean_weights = torch.einsum("bqij,bq->bij", weights, row_weights)
        ctx.mark_non_differentiable(mean_weights)
        return torch.einsum("bqi,bq->bi", per_row, row_weights), mean_weights

    @staticmethod
    def backward(ctx: Any, grad_items: Tensor, _grad_weights: Tensor) -> tuple[None, Tensor, None, None]:
        teacher, student, row_weights, ratios = ctx.saved_tensors
        alignment, batch = ctx.alignment, teacher.shape[0]
        weights = alignment["weights"]  # (B, q, Ht, Hs)
        # dL/dM = -g w T / M = ratio * scale: the scale goes on the small factors of the products
        scale = (row_weights[:, :, None] * grad_items[:, None, :]).neg_()[..., None]  # (B, q, Ht, 1)
        grad_weights = torch.empty_like(weights)
        for item in range(batch):
            torch.bmm(ratios[item], student[item].permute(1, 2, 0), out=grad_weights[item])  # (q, Ht, Hs)
        grad_weights.mul_(scale)
        grad_cosines = weights * (grad_weights - (weights * grad_weights).sum(-1, keepdim=True)) / ctx.temperature
        mixture_factor = (weights * scale).transpose(2, 3)  # (B, q, Hs, Ht)
        cosine_factor = (grad_cosines / alignment["denominator"]).transpose(2, 3)
        # through the student norms in the cosines' denominators (where they are not clamped)
        norm_term = (grad_cosines * alignment["cosines"] * alignment["unclamped"]).sum(2)  # (B, q, Hs)
        norm_factor = (norm_term / alignment["student_norm"].square().clamp_min(NORM_EPS)).transpose(1, 2)
        grad_student = torch.mul(student, norm_factor[..., None]).neg_()  # (B, Hs, q, k)
        grad_rows = student.new_empty(student.shape[2], student.shape[1], student.shape[3])  # (q, Hs, k)
        for item in range(batch):
            # through the mixture, and through the cosines' numerators
            torch.bmm(mixture_factor[item], ratios[item], out=grad_rows)
            grad_rows.baddbmm_(cosine_factor[item], teacher[item].transpose(0, 1))
            grad_student[item] += grad_rows.transpose(0, 1)
        return None, grad_student, None, None


def token_mixture_kl(
    teacher: Tensor, student: Tensor, temperature: float, row_weights: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """The ``token`` variant's loss ``[B, Ht]`` and its alignment weights averaged over the weighted
    rows ``[B, Ht, Hs]`` (not differentiable).

    Args:
        teacher: ``[B, Ht, q, k]`` probabilities; must not require gradients.
        student: ``[B, Hs, q, k]`` probabilities.
        temperature: the alignment softmax temperature (a float).
        row_weights: ``[B, q]`` weight of each query row (``mask / valid_rows``); None: ``1 / q``.
    """
    if teacher.requires_grad:
        raise ValueError("token_mixture_kl does not differentiate the teacher; detach it or use plain autograd")
    if row_weights is None:
        row_weights = teacher.new_full((teacher.shape[0], teacher.shape[2]), 1.0 / teacher.shape[2])
    return _TokenMixtureKL.apply(teacher, student, row_weights.to(teacher.dtype), float(temperature))
