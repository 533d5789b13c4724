"""MiniLMv2-style multi-head self-attention relation distillation.

For each of q, k and v, the heads are concatenated and re-split into a fixed number of *relation
heads* ``R``; the relation ``softmax(X_r X_r^T / sqrt(d_r))`` of teacher and student are matched
with row-wise KL. Because both sides are re-split into ``R`` heads, any head counts (and widths
divisible by ``R``) work.
"""

from __future__ import annotations

import math

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


def self_relation(vectors: Tensor, num_relation_heads: int, key_mask: Tensor | None = None) -> Tensor:
    """Relation distribution ``softmax(X X^T / sqrt(d_r))`` ``[B, R, L, L]``; masked keys get 0."""
    split = relation_heads(vectors, num_relation_heads)  # (B, R, L, d_r)
    scores = split @ split.transpose(-2, -1) / math.sqrt(split.shape[-1])  # (B, R, L, L)
    if key_mask is not None:
        scores = scores.masked_fill(~key_mask[:, None, None, :], float("-inf"))
    return torch.softmax(scores, dim=-1)


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
        teacher = self_relation(teacher_qkv[index].to(dtype), num_relation_heads, mask)
        student = self_relation(student_qkv[index].to(dtype), num_relation_heads, mask)
        per_item = masked_row_mean(row_kl(teacher, student), mask)  # (B, R)
        total = per_item if total is None else total + per_item
    return reduce(total, reduction)
