"""MiniLMv2-style multi-head self-attention relation distillation.

For each of q, k and v, the heads are concatenated and re-split into a fixed number of *relation
heads* ``R``; the relation ``softmax(X_r X_r^T / sqrt(d_r))`` of teacher and student are matched
with row-wise KL. Because both sides are re-split into ``R`` heads, any head counts (and widths
divisible by ``R``) work.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from amad.losses.maps import (
    check_reduction,
    loss_dtype,
    masked_row_mean,
    reduce,
    row_kl,
    row_mean_weights,
    without_autocast,
)
from amad.losses.options import RELATIONS


def _check_divides(per_head: Tensor, num_relation_heads: int) -> None:
    heads, head_dim = per_head.shape[1], per_head.shape[-1]
    if (heads * head_dim) % num_relation_heads:
        raise ValueError(
            f"num_relation_heads={num_relation_heads} must divide the attention width {heads * head_dim} "
            f"({heads} heads x {head_dim})"
        )


def relation_heads(per_head: Tensor, num_relation_heads: int) -> Tensor:
    """``[B, H, L, d]`` -> ``[B, R, L, H*d/R]``: concatenate heads, re-split into ``R`` heads."""
    _check_divides(per_head, num_relation_heads)
    batch, heads, length, head_dim = per_head.shape
    width = heads * head_dim
    joined = per_head.transpose(1, 2).reshape(batch, length, width)  # (B, L, H*d)
    return joined.view(batch, length, num_relation_heads, width // num_relation_heads).transpose(1, 2)


def relation_scores(vectors: Tensor, num_relation_heads: int, key_mask: Tensor | None = None) -> Tensor:
    """Relation logits ``X X^T / sqrt(d_r)`` ``[B, R, L, L]``; masked keys get ``-inf``."""
    split = relation_heads(vectors, num_relation_heads)  # (B, R, L, d_r)
    split = split * split.shape[-1] ** -0.25  # scale the small factor, not the (L, L) product
    scores = split @ split.transpose(-2, -1)  # (B, R, L, L)
    if key_mask is not None:
        scores = scores.masked_fill(~key_mask[:, None, None, :], float("-inf"))
    return scores


def self_relation(vectors: Tensor, num_relation_heads: int, key_mask: Tensor | None = None) -> Tensor:
    """Relation distribution ``softmax(X X^T / sqrt(d_r))`` ``[B, R, L, L]``; masked keys get 0."""
    return torch.softmax(relation_scores(vectors, num_relation_heads, key_mask), dim=-1)


CHUNK_ELEMENTS = 1 << 18
"""Relation-map elements (``slices x L x L``) handled at a time by the fused KL: a few such chunks
stay in the CPU's cache while they are exponentiated, compared and reduced."""


class _FusedRelationKL(torch.autograd.Function):
    """Masked mean over query rows of ``KL(softmax(T T^T / sqrt(d_t))[row] || softmax(S S^T / sqrt(d_s))[row])``
    per relation head,
    for ``[N, L, d]`` heads (``N`` = batch x relation heads) and a teacher that is not differentiated.

    The relations are built, normalised and compared a cache-sized chunk of heads at a time,
    instead of as whole ``[N, L, L]`` tensors passed a dozen times through memory, and nothing of
    that size is kept: the loss of head ``n`` is ``sum_r w_r KL_r`` (``w``: the row weights of the
    masked mean), so its gradient ``(diag(w) P + P^T diag(w)) S / sqrt(d)`` with ``P = s - t`` (the
    student's and the teacher's relations) is formed in the forward, while ``P`` is in cache, and the
    backward only scales it by each head's incoming gradient.
    """

    @staticmethod
    def forward(ctx: Any, teacher: Tensor, student: Tensor, mask: Tensor | None) -> Tensor:
        heads, length, _ = student.shape
        # the masked mean's row weights; equal ones (no mask) are applied in the backward instead
        row_weights = None if mask is None else row_mean_weights(mask, student.dtype)  # (N, L)
        gradient = torch.empty_like(student) if ctx.needs_input_grad[1] else None  # (N, L, d)
        masked = torch.finfo(student.dtype).min / 4  # finite: 0 * (log t - log s) stays 0 at masked keys
        scales = (teacher.shape[-1] ** -0.5, student.shape[-1] ** -0.5)
        row_dots = student.new_empty(heads, length)  # sum_k t_k (y_k - z_k) of each row
        log_normalisers = student.new_empty(2, heads, length)  # (teacher, student) x (N, L)
        buffers = None
        for rows in relation_chunks(heads, length):
            count = rows.stop - rows.start
            if buffers is None or buffers.shape[1] != count:  # reused: fresh ones would be faulted in every chunk
                # and sized to the chunk: the out= below must be contiguous (a strided out= of
                # torch._softmax is written as if it were not)
                buffers = student.new_empty(4 if gradient is None else 5, count, length, length)
            logits, probs = buffers[0:2], buffers[2:4]  # (teacher, student) x (n, L, L)
            for side, vectors in enumerate((teacher[rows], student[rows])):
                torch.baddbmm(
                    logits[side], vectors, vectors.transpose(1, 2), beta=0, alpha=scales[side], out=logits[side]
                )
            if mask is not None:
                logits.masked_fill_(~mask[None, rows, None, :], masked)
            torch._softmax(logits, -1, False, out=probs)  # torch.softmax has no out=
            log_normalisers[:, rows] = _log_normaliser(logits, probs)
            # KL(t || s) per row = sum_k t_k (y_k - z_k) - lse(y) + lse(z)   (y, z: teacher, student logits)
            torch.sum(logits[0].sub_(logits[1]).mul_(probs[0]), -1, out=row_dots[rows])
            if gradient is not None:
                # d/dS of sum_r w_r KL_r = (M + M^T) S with M = diag(w) P, P = s - t
                weighted = probs[1].sub_(probs[0])
                if row_weights is not None:
                    weighted.mul_(row_weights[rows, :, None])
                torch.add(weighted, weighted.transpose(1, 2), out=buffers[4])
                torch.bmm(buffers[4], student[rows], out=gradient[rows])
        per_row = row_dots.sub_(log_normalisers[0]).add_(log_normalisers[1])  # (N, L)
        if row_weights is None:
            per_head = per_row.mean(-1)
            ctx.gradient_scale = scales[1] / length
        else:
            per_head = torch.linalg.vecdot(per_row, row_weights)
            ctx.gradient_scale = scales[1]
        ctx.save_for_backward(gradient)
        return per_head

    @staticmethod
    @without_autocast
    def backward(ctx: Any, grad_heads: Tensor) -> tuple[None, Tensor, None]:
        (gradient,) = ctx.saved_tensors
        return None, gradient * (grad_heads * ctx.gradient_scale)[:, None, None], None


def relation_chunks(heads: int, length: int) -> list[slice]:
    """The slices of ``heads`` relation heads of length ``length`` that the loss takes one at a time."""
    step = max(1, CHUNK_ELEMENTS // (length * length))
    return [slice(start, min(start + step, heads)) for start in range(0, heads, step)]


DIAGONAL_MIN = math.exp(-8)
"""Smallest diagonal probability ``p_d`` whose log gives a row's log-normaliser: its rounding grows
with ``|log p_d|``; at ``e^-8`` it is still about that of the row-max formula in float32."""


def _log_normaliser(logits: Tensor, probs: Tensor) -> Tensor:
    """``lse`` of each row of ``logits`` ``[..., L, L]`` -> ``[..., L]``, given their softmax ``probs``.

    ``lse = y_k - log p_k`` holds for every key ``k``. On the CPU it is taken at the diagonal (a
    vector's relation with itself, usually among the row's largest), which costs no pass over the
    rows; rows whose diagonal probability is below :data:`DIAGONAL_MIN` (a masked key, or a much
    longer vector elsewhere in the row) take it at the row's largest probability instead, as
    ``amax(y) - log(amax(p))``, while the chunk is in cache. That is what every row takes on a GPU
    (choosing rows there would wait for the device once per chunk).
    """
    if probs.device.type != "cpu":
        return logits.amax(-1) - probs.amax(-1).log()
    diagonal = probs.diagonal(dim1=-2, dim2=-1)
    log_normaliser = logits.diagonal(dim1=-2, dim2=-1) - diagonal.log()
    small = diagonal < DIAGONAL_MIN
    if small.any():
        rows = small.nonzero(as_tuple=True)
        log_normaliser[rows] = logits[rows].amax(-1) - probs[rows].amax(-1).log()
    return log_normaliser


def relation_layout(per_head: Tensor, num_relation_heads: int) -> Tensor:
    """:func:`relation_heads` as one contiguous ``[B*R, L, d_r]`` tensor, copied in one pass where the
    relation heads split or group the attention heads evenly (two passes otherwise)."""
    batch, heads, length, head_dim = per_head.shape
    relation_dim = heads * head_dim // num_relation_heads
    if num_relation_heads % heads == 0:  # each attention head splits into R/H relation heads
        split = num_relation_heads // heads
        view = per_head.reshape(batch, heads, length, split, relation_dim).transpose(2, 3)
    elif heads % num_relation_heads == 0:  # each relation head joins H/R attention heads
        group = heads // num_relation_heads
        view = per_head.reshape(batch, num_relation_heads, group, length, head_dim).transpose(2, 3)
    else:
        view = relation_heads(per_head, num_relation_heads)
    return view.reshape(batch * num_relation_heads, length, relation_dim)


def relation_kl(teacher: Tensor, student: Tensor, num_relation_heads: int, mask: Tensor | None) -> Tensor:
    """Mean over ``mask``'s rows of the row-wise ``KL(teacher relation || student relation)``
    ``[B, R]`` of one of q, k or v (``mask`` also hides those keys).

    With a teacher that needs no gradient (the usual frozen teacher) the divergence comes from the
    log-probabilities directly, chunk by chunk, with the gradient formed on the way
    (:class:`_FusedRelationKL`); otherwise through plain autograd and :func:`row_kl` (whose floor
    on student probabilities, ``sqrt(tiny)``, makes the two differ only where a student
    probability underflows it).
    """
    if teacher.requires_grad:
        per_row = row_kl(
            self_relation(teacher, num_relation_heads, mask), self_relation(student, num_relation_heads, mask)
        )
        return masked_row_mean(per_row, mask)
    batch, relations = student.shape[0], num_relation_heads
    _check_divides(teacher, relations)
    _check_divides(student, relations)
    mask = None if mask is None else mask.repeat_interleave(relations, dim=0)  # (B*R, L)
    with torch.autocast(student.device.type, enabled=False):  # in the loss dtype, whatever autocast is on
        per_head = _FusedRelationKL.apply(
            relation_layout(teacher, num_relation_heads), relation_layout(student, num_relation_heads), mask
        )
    return per_head.view(batch, relations)


def relation_loss(
    teacher_qkv: tuple[Tensor, Tensor, Tensor],
    student_qkv: tuple[Tensor, Tensor, Tensor],
    *,
    num_relation_heads: int = 8,
    relations: tuple[str, ...] = RELATIONS,
    query_mask: Tensor | None = None,
    key_mask: Tensor | None = None,
    reduction: str = "mean",
) -> Tensor:
    """Sum over ``relations`` of the mean row-wise ``KL(teacher relation || student relation)``.

    Args:
        teacher_qkv: teacher per-head ``(q, k, v)``, each ``[B, Ht, L, dt]`` (``L`` of q may differ
            from that of k and v for cross-attention).
        student_qkv: student per-head ``(q, k, v)``, each ``[B, Hs, L, ds]``.
        num_relation_heads: ``R``; must divide both attention widths.
        relations: any of ``"qq"``, ``"kk"``, ``"vv"``.
        query_mask: ``[B, Lq]`` bool, True for real query tokens (rows and keys of the q-q relation).
        key_mask: ``[B, Lk]`` bool for the k-k and v-v relations (for self-attention pass the
            same mask as ``query_mask``; None means all key tokens are real).
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (``[B, R]``).
    """
    check_reduction(reduction)
    unknown = set(relations) - set(RELATIONS)
    if unknown or not relations:
        raise ValueError(f"relations must be a non-empty subset of {RELATIONS}, got {relations}")
    dtype = loss_dtype(*teacher_qkv, *student_qkv)
    total: Tensor | None = None
    for relation in relations:
        index = "qkv".index(relation[0])
        mask = query_mask if relation == "qq" else key_mask
        per_item = relation_kl(teacher_qkv[index].to(dtype), student_qkv[index].to(dtype), num_relation_heads, mask)
        total = per_item if total is None else total + per_item
    return reduce(total, reduction)
