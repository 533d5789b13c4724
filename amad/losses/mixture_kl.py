"""AMAD's default ``kl`` variant (Eq. 9) with a hand-written backward, a cache-sized chunk of samples at a time.

Teacher head ``i`` is matched to the mixture ``M_i = sum_j a_ij S_j``, ``a_ij = softmax_j(c_ij / tau)``
with the cosines ``c_ij`` of the maps flattened over valid query rows, and the loss is
``sum_r w_r KL(T_i[r] || M_i[r])`` (``w_r``: ``1 / valid rows`` on valid rows, 0 on padding). With
plain autograd this reads the teacher-sized ``[B, Ht, q, k]`` maps about five times from memory
(cosines, norms, the divergence and their backward twins) and allocates several student-sized
gradients for autograd to add up. Here a chunk of samples gets its cosines, weights, mixture,
ratio ``R = T / M`` and divergence while its maps are in cache; the backward recomputes the chunk's
ratio and forms the chunk's whole student gradient in one buffer::

    dL/dM_i   = -g_i w_r R_i                                (g: incoming gradient)
    dL/da_ij  = <dL/dM_i, S_j>
    dL/dc_ij  = a_ij (dL/da_ij - sum_j' a_ij' dL/da_ij') / tau,       dL/dtau = -sum_ij dL/dc_ij c_ij / tau
    dL/dS_j   = sum_i a_ij dL/dM_i + m (sum_i dL/dc_ij T_i / D_ij - sum_i [D_ij unclamped] dL/dc_ij c_ij S^_j / |S^_j|^2)

with ``m`` the valid rows, ``S^_j = m S_j``, ``c_ij = <T_i, S^_j> / D_ij`` and ``D_ij = max(|T_i| |S^_j|, eps)``
(``|T_i|`` over valid rows). The teacher is not differentiated: callers use plain autograd when it
requires gradients.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from amad.losses.maps import (
    NORM_EPS,
    alignment_backward,
    log_floor,
    masked_norms,
    row_mean_weights,
    without_autocast,
    zero_masked_rows,
)

CHUNK_ELEMENTS = 1 << 20
"""Teacher-map elements handled at a time (at least one sample): the chunk's mixture, ratio and
log stay in the CPU's cache."""


def _chunks(teacher: Tensor) -> list[slice]:
    per_sample = math.prod(teacher.shape[1:])
    step = max(1, CHUNK_ELEMENTS // max(1, per_sample))
    return [slice(start, min(start + step, teacher.shape[0])) for start in range(0, teacher.shape[0], step)]


def _ratio(teacher: Tensor, student: Tensor, weights: Tensor, out: Tensor) -> Tensor:
    """``floor + T / M`` ``[n, Ht, q*k]`` with ``M = a S``, written to ``out`` (a buffer reused from
    chunk to chunk: a fresh one would be faulted in page by page every time): its log is finite
    where ``T == 0``, and the floor (~1e-19) changes no value or gradient measurably."""
    floor = log_floor(teacher.dtype)
    mixture = torch.bmm(weights, student.flatten(2), out=out[: teacher.shape[0]])  # (n, Ht, q*k)
    return torch.addcdiv(mixture.new_tensor(floor), teacher.flatten(2), mixture.clamp_min_(floor), out=mixture)


def _ratio_buffer(teacher: Tensor, chunks: list[slice]) -> Tensor:
    """Room for the largest chunk's ratio ``[n, Ht, q*k]``."""
    return teacher.new_empty(chunks[0].stop if chunks else 0, teacher.shape[1], math.prod(teacher.shape[2:]))


class _MixtureKL(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, teacher: Tensor, student: Tensor, temperature: Tensor, query_mask: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        batch, teacher_heads, queries, keys = teacher.shape
        row_mask = None if query_mask is None else query_mask.to(teacher.dtype)  # (B, q)
        # |T_i| |S^_j|, cosines and alignment weights  (B, Ht, Hs)
        products = teacher.new_empty(batch, teacher_heads, student.shape[1])
        cosines, weights = torch.empty_like(products), torch.empty_like(products)
        student_norm = teacher.new_empty(batch, student.shape[1])
        per_row = teacher.new_empty(batch, teacher_heads, queries)
        chunks = _chunks(teacher)
        buffer = _ratio_buffer(teacher, chunks)
        for rows in chunks:
            mask = None if row_mask is None else row_mask[rows]
            valid_student = zero_masked_rows(student[rows], mask).flatten(2)  # S^ (n, Hs, q*k)
            student_norm[rows] = torch.linalg.vector_norm(valid_student, dim=-1)
            teacher_norm = masked_norms(teacher[rows], mask)
            torch.mul(teacher_norm[:, :, None], student_norm[rows, None, :], out=products[rows])
            torch.bmm(teacher[rows].flatten(2), valid_student.transpose(1, 2), out=cosines[rows])
            cosines[rows] /= products[rows].clamp_min(NORM_EPS)
            weights[rows] = torch.softmax(cosines[rows] / temperature, dim=-1)
            log_ratio = _ratio(teacher[rows], student[rows], weights[rows], buffer).log_()
            per_row[rows] = log_ratio.view(-1, teacher_heads, queries, keys).mul_(teacher[rows]).sum(-1)
        ctx.save_for_backward(teacher, student, temperature, row_mask, products, cosines, weights, student_norm)
        ctx.mark_non_differentiable(weights)
        if row_mask is None:
            return per_row.mean(-1), weights  # (B, Ht)
        return (per_row * row_mean_weights(query_mask, teacher.dtype)[:, None, :]).sum(-1), weights

    @staticmethod
    @without_autocast
    def backward(ctx: Any, grad_items: Tensor, _grad_weights: Tensor) -> tuple[None, Tensor, Tensor | None, None]:
        teacher, student, temperature, row_mask, products, cosines, weights, student_norm = ctx.saved_tensors
        batch, _, queries, keys = teacher.shape
        valid_rows = teacher.new_full((batch,), queries) if row_mask is None else row_mask.sum(-1).clamp_min(1.0)
        scale = -grad_items / valid_rows[:, None]  # (B, Ht): dL/dM_i = scale_i m_r R_i
        mixture_factor = (weights * scale[..., None]).transpose(1, 2)  # (B, Hs, Ht)
        norm_sq = student_norm.square().clamp_min(NORM_EPS)  # (B, Hs)
        grad_student = student.new_empty(student.shape).flatten(2)  # (B, Hs, q*k), contiguous
        grad_temperature = torch.zeros_like(temperature) if ctx.needs_input_grad[2] else None
        chunks = _chunks(teacher)
        buffer = _ratio_buffer(teacher, chunks)
        for rows in chunks:
            mask = None if row_mask is None else row_mask[rows]
            ratio = _ratio(teacher[rows], student[rows], weights[rows], buffer)  # (n, Ht, q*k)
            valid_student = zero_masked_rows(student[rows], mask).flatten(2)
            grad_weights = torch.bmm(ratio, valid_student.transpose(1, 2)).mul_(scale[rows, :, None])  # (n, Ht, Hs)
            grad_cosines, numerator_factor, norm_factor = alignment_backward(
                grad_weights, weights[rows], cosines[rows], products[rows], norm_sq[rows], temperature
            )
            if grad_temperature is not None:
                grad_temperature -= torch.linalg.vecdot(grad_cosines.flatten(), cosines[rows].flatten()) / temperature
            chunk = grad_student[rows]
            torch.bmm(mixture_factor[rows], ratio, out=chunk)  # through the mixture
            chunk.baddbmm_(numerator_factor.transpose(1, 2), teacher[rows].flatten(2))  # the cosines' numerators
            chunk.addcmul_(valid_student, norm_factor[..., None], value=-1)  # and their denominators
            if mask is not None:
                chunk.view(-1, student.shape[1], queries, keys).mul_(mask[:, None, :, None])
        return None, grad_student.view_as(student), grad_temperature, None


def mixture_kl(
    teacher: Tensor, student: Tensor, temperature: float | Tensor, query_mask: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """The ``kl`` variant's loss ``[B, Ht]`` (weighted mean over valid query rows of
    ``KL(T_i[row] || M_i[row])``) and its alignment weights ``[B, Ht, Hs]`` (not differentiable).

    Args:
        teacher: ``[B, Ht, q, k]`` probabilities; must not require gradients.
        student: ``[B, Hs, q, k]`` probabilities.
        temperature: the alignment softmax temperature: a float, or a scalar tensor (a learned one
            gets its gradient).
        query_mask: ``[B, q]`` bool, True for real query rows; None: every row.
    """
    if teacher.requires_grad:
        raise ValueError("mixture_kl does not differentiate the teacher; detach it or use plain autograd")
    temperature = torch.as_tensor(temperature, dtype=teacher.dtype, device=teacher.device)
    with torch.autocast(teacher.device.type, enabled=False):  # in the loss dtype, whatever autocast is on
        return _MixtureKL.apply(teacher, student, temperature, query_mask)
