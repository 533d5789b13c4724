"""AMAD's ``token`` variant (Eq. 12) with a hand-written backward, computed sample by sample.

Per query row ``r`` the alignment weights are ``a_rij = softmax_j(cos(T_i[r], S_j[r]) / tau)`` and
the loss ``sum_r w_r KL(T_i[r] || sum_j a_rij S_j[r])``. With plain autograd this takes about
twenty passes over whole ``[B, H, q, k]`` tensors (einsum copies, divisions, ``where``s of the
clamps, their backward twins). Here all the work on one sample's maps (a couple of MiB) is done
while they are in cache: forward and backward each read a sample's teacher maps once, as batched
matrix products over its query rows plus a few elementwise passes. The forward keeps each sample's
ratio ``T / M`` (a tensor per sample: one large teacher-sized allocation would be faulted in page
by page on every call) for the backward, which applies::

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

from amad.losses.maps import NORM_EPS, alignment_backward, log_floor, without_autocast


class _TokenMixtureKL(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, teacher: Tensor, student: Tensor, row_weights: Tensor, temperature: float
    ) -> tuple[Tensor, Tensor]:
        batch, teacher_heads, queries, keys = teacher.shape
        student_norm = torch.linalg.vector_norm(student, dim=-1).transpose(1, 2)  # (B, q, Hs)
        # per query row, row-major: |T_i| |S_j|, cosines, alignment weights  (B, q, Ht, Hs)
        products = teacher.new_empty(batch, queries, teacher_heads, student.shape[1])
        cosines, weights = torch.empty_like(products), torch.empty_like(products)
        ratios = []  # floor + T / M per sample  (q, Ht, k)
        log_ratio = teacher.new_empty(queries, teacher_heads, keys)
        per_row = teacher.new_empty(batch, queries, teacher_heads)
        floor = log_floor(teacher.dtype)
        for item in range(batch):
            rows = teacher[item].transpose(0, 1)  # (q, Ht, k)
            teacher_norm = torch.linalg.vector_norm(teacher[item], dim=-1).t()  # (q, Ht)
            torch.mul(teacher_norm[..., None], student_norm[item, :, None, :], out=products[item])
            torch.bmm(rows, student[item].permute(1, 2, 0), out=cosines[item])
            cosines[item].div_(products[item].clamp_min(NORM_EPS))
            weights[item] = torch.softmax(cosines[item] / temperature, dim=-1)
            # the mixture M_i = sum_j a_ij S_j; as in mixture_kl, floor + T / M keeps log finite where T == 0
            ratio = torch.bmm(weights[item], student[item].transpose(0, 1))
            torch.addcdiv(ratio.new_tensor(floor), rows, ratio.clamp_min_(floor), out=ratio)
            torch.log(ratio, out=log_ratio).mul_(rows)
            torch.sum(log_ratio, dim=-1, out=per_row[item])
            ratios.append(ratio)
        ctx.save_for_backward(teacher, student, row_weights, *ratios)
        ctx.alignment = (student_norm, products, cosines, weights)  # small: [B, q, Hs], [B, q, Ht, Hs]
        ctx.temperature = temperature
        mean_weights = torch.einsum("bqij,bq->bij", weights, row_weights)
        ctx.mark_non_differentiable(mean_weights)
        return torch.einsum("bqi,bq->bi", per_row, row_weights), mean_weights

    @staticmethod
    @without_autocast
    def backward(ctx: Any, grad_items: Tensor, _grad_weights: Tensor) -> tuple[None, Tensor, None, None]:
        teacher, student, row_weights, *ratios = ctx.saved_tensors
        student_norm, products, cosines, weights = ctx.alignment
        # dL/dM = -g w T / M = ratio * scale: the scale goes on the small factors of the products
        scale = (row_weights[:, :, None] * grad_items[:, None, :]).neg_()[..., None]  # (B, q, Ht, 1)
        mixture_factor = (weights * scale).transpose(2, 3)  # (B, q, Hs, Ht)
        norm_sq = student_norm.square().clamp_min(NORM_EPS)  # (B, q, Hs)
        grad_student = torch.empty_like(student)
        grad_rows = student.new_empty(student.shape[2], student.shape[1], student.shape[3])  # (q, Hs, k)
        for item in range(teacher.shape[0]):
            grad_weights = torch.bmm(ratios[item], student[item].permute(1, 2, 0)).mul_(scale[item])  # (q, Ht, Hs)
            _, numerator_factor, norm_factor = alignment_backward(
                grad_weights, weights[item], cosines[item], products[item], norm_sq[item], ctx.temperature
            )
            torch.bmm(mixture_factor[item], ratios[item], out=grad_rows)  # through the mixture
            grad_rows.baddbmm_(numerator_factor.transpose(1, 2), teacher[item].transpose(0, 1))  # the numerators
            torch.addcmul(  # and the denominators
                grad_rows.transpose(0, 1), student[item], norm_factor.t()[..., None], value=-1, out=grad_student[item]
            )
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
    with torch.autocast(teacher.device.type, enabled=False):  # in the loss dtype, whatever autocast is on
        return _TokenMixtureKL.apply(teacher, student, row_weights.to(teacher.dtype), float(temperature))
