"""One-to-one attention-map distillation (the paper's baseline): teacher head i teaches student head i."""

from __future__ import annotations

from torch import Tensor

from amad.losses.maps import check_maps, check_reduction, loss_dtype, masked_row_mean, reduce, row_kl
from amad.losses.options import HEAD_MISMATCH_POLICIES


def match_teacher_heads(teacher: Tensor, num_student_heads: int, head_mismatch: str) -> Tensor:
    """Reduce ``[B, Ht, q, k]`` teacher maps to ``[B, Hs, q, k]``.

    ``truncate`` keeps teacher heads ``0..Hs-1`` (the rest are discarded); ``mean_pool`` averages
    groups of ``Ht / Hs`` consecutive teacher heads (needs ``Hs`` to divide ``Ht``).
    """
    if head_mismatch not in HEAD_MISMATCH_POLICIES:
        raise ValueError(f"head_mismatch must be one of {HEAD_MISMATCH_POLICIES}, got {head_mismatch!r}")
    batch, teacher_heads, queries, keys = teacher.shape
    if num_student_heads > teacher_heads:
        raise ValueError(
            f"one-to-one distillation needs at least as many teacher heads as student heads; "
            f"got {teacher_heads} teacher and {num_student_heads} student heads"
        )
    if head_mismatch == "truncate":
        return teacher[:, :num_student_heads]
    if teacher_heads % num_student_heads:
        raise ValueError(
            f"head_mismatch='mean_pool' needs the student head count to divide the teacher's; "
            f"got {teacher_heads} teacher and {num_student_heads} student heads (use 'truncate')"
        )
    group = teacher_heads // num_student_heads
    return teacher.view(batch, num_student_heads, group, queries, keys).mean(2)  # (B, Hs, q, k)


def one_to_one_loss(
    teacher: Tensor,
    student: Tensor,
    *,
    head_mismatch: str = "truncate",
    query_mask: Tensor | None = None,
    reduction: str = "mean",
) -> Tensor:
    """Row-wise ``KL(T_i || S_i)`` between paired heads, averaged over valid query rows.

    Args:
        teacher: ``[B, Ht, q, k]`` attention probabilities.
        student: ``[B, Hs, q, k]`` attention probabilities, ``Hs <= Ht``.
        head_mismatch: ``"truncate"`` or ``"mean_pool"`` (see :func:`match_teacher_heads`).
        query_mask: ``[B, q]`` bool, True for real query rows.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (``[B, Hs]``).
    """
    check_maps(teacher, student, query_mask)
    check_reduction(reduction)
    dtype = loss_dtype(teacher, student)
    matched = match_teacher_heads(teacher.to(dtype), student.shape[1], head_mismatch)
    per_item = masked_row_mean(row_kl(matched, student.to(dtype)), query_mask)  # (B, Hs)
    return reduce(per_item, reduction)
