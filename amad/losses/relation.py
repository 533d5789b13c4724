"""MiniLMv2-style multi-head self-attention relation distillation.

For each of q, k and v, the heads are concatenated and re-split into a fixed number of *relation
heads* ``R``; the relation ``softmax(X_r X_r^T / sqrt(d_r))`` of teacher and student are matched
with row-wise KL. Because both sides are re-split into ``R`` heads, any head counts (and widths
divisible by ``R``) work.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from amad.losses.maps import check_reduction, loss_dtype, masked_row_mean, reduce, row_kl

RELATIONS = ("qq", "kk", "vv")


def relation_heads(per_head: Tensor, num_relation_heads: int) -> Tensor:
    """``[B, H, L, d]`` -> ``[B, R, L, H*d/R]``: concatenate heads, re-split into ``R`` heads."""
    batch, heads, length, head_dim = per_head.shape
    width = heads * head_dim
    if width % num_relation_heads:
        raise ValueError(
            f"num_relation_heads={num_relation_heads} must divide the attention width {width} "
            f"({heads} heads x {head_dim})"
        )
    joined = per_head.transpose(1, 2).reshape(batch, length, width)  # (B, L, H*d)
    return joined.view(batch, length, num_relation_heads, width // num_relation_heads).transpose(1, 2)


def relation_scores(
    vectors: Tensor, num_relation_heads: int, key_mask: Tensor | None = None, *, finite_mask: bool = False
) -> Tensor:
    """Relation logits ``X X^T / sqrt(d_r)`` ``[B, R, L, L]``; masked keys get ``-inf``, or with
    ``finite_mask`` a quarter of the dtype's lowest value (their probability is still exactly 0)."""
    split = relation_heads(vectors, num_relation_heads)  # (B, R, L, d_r)
    split = split * split.shape[-1] ** -0.25  # scale the small factor, not the (L, L) product
    scores = split @ split.transpose(-2, -1)  # (B, R, L, L)
    if key_mask is not None:
        masked = torch.finfo(scores.dtype).min / 4 if finite_mask else float("-inf")
        scores = scores.masked_fill(~key_mask[:, None, None, :], masked)
    return scores


def self_relation(vectors: Tensor, num_relation_heads: int, key_mask: Tensor | None = None) -> Tensor:
    """Relation distribution ``softmax(X X^T / sqrt(d_r))`` ``[B, R, L, L]``; masked keys get 0."""
    return torch.softmax(relation_scores(vectors, num_relation_heads, key_mask), dim=-1)


class _RowKLToScores(torch.autograd.Function):
    """Row-wise ``KL(t || softmax(z))`` from a fixed ``log t`` and student logits ``z``.

    The gradient with respect to ``z`` is ``(softmax(z) - t) * grad`` (rows of ``t`` sum to 1): one
    elementwise pass instead of autograd's chain through softmax, division and log.
    """

    @staticmethod
    def forward(ctx: Any, teacher_log: Tensor, student_scores: Tensor) -> Tensor:
        student_log = torch.log_softmax(student_scores, dim=-1)  # (..., k)
        teacher = teacher_log.exp()
        ctx.save_for_backward(teacher, student_log)
        return torch.linalg.vecdot(teacher_log - student_log, teacher)  # (...)

    @staticmethod
    def backward(ctx: Any, grad_rows: Tensor) -> tuple[None, Tensor]:
        teacher, student_log = ctx.saved_tensors
        grad = student_log.exp().sub_(teacher)  # softmax(z) - t
        return None, grad.mul_(grad_rows[..., None])


def relation_kl(teacher: Tensor, student: Tensor, num_relation_heads: int, key_mask: Tensor | None) -> Tensor:
    """Row-wise ``KL(teacher relation || student relation)`` ``[B, R, L]`` of one of q, k or v.

    With a teacher that needs no gradient (the usual frozen teacher) the divergence comes from the
    log-probabilities directly, with a hand-written backward; otherwise through plain autograd and
    :func:`row_kl` (whose floor on student probabilities, ``sqrt(tiny)``, makes the two differ only
    where a student probability underflows it).
    """
    if teacher.requires_grad:
        return row_kl(
            self_relation(teacher, num_relation_heads, key_mask), self_relation(student, num_relation_heads, key_mask)
        )
    # finite floors for masked keys: 0 * (log t - log s) is then 0 there, not 0 * nan
    teacher_log = torch.log_softmax(relation_scores(teacher, num_relation_heads, key_mask, finite_mask=True), dim=-1)
    return _RowKLToScores.apply(teacher_log, relation_scores(student, num_relation_heads, key_mask, finite_mask=True))


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
        per_row = relation_kl(teacher_qkv[index].to(dtype), student_qkv[index].to(dtype), num_relation_heads, mask)
        per_item = masked_row_mean(per_row, mask)  # (B, R)
        total = per_item if total is None else total + per_item
    return reduce(total, reduction)
