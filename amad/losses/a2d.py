"""Align-to-Distill (A2D, Jin et al., LREC-COLING 2024): a learned head aligner between student and teacher maps.

The attention alignment module is a pointwise (1 x 1) convolution over the head axis: ``Ht`` maps
``A_i = sum_j W_ij S_j + b_i`` from the student's ``Hs`` maps, trained with the student. Each
teacher map and its aligned map are compared as distributions over the whole map: ``KL(softmax(T_i)
|| softmax(A_i))`` with the softmax over every (query, key) entry of the map (applied to the
teacher's probabilities as well, as the reference implementation does). Padding query rows and
padding keys are left out of both softmaxes. The reference aligns every layer of a stack at once
(``Ls * Hs -> Lt * Ht`` channels); amad's layer pairs give each pair its own ``Hs -> Ht`` aligner.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from amad.losses.maps import check_maps, loss_dtype


class HeadAligner(nn.Module):
    """The attention alignment module: ``[B, Hs, q, k] -> [B, Ht, q, k]`` (a 1 x 1 convolution, with bias)."""

    def __init__(self, student_heads: int, teacher_heads: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(student_heads, teacher_heads, kernel_size=1)

    def forward(self, maps: Tensor) -> Tensor:
        return self.conv(maps.to(self.conv.weight.dtype))


def _valid_entries(shape: torch.Size, query_mask: Tensor | None, key_mask: Tensor | None, device) -> Tensor | None:
    """``[B, 1, q, k]`` bool of the real (query, key) entries, or None when every entry is real."""
    if query_mask is None and key_mask is None:
        return None
    batch, _, queries, keys = shape
    rows = query_mask if query_mask is not None else torch.ones(batch, queries, dtype=torch.bool, device=device)
    columns = key_mask if key_mask is not None else torch.ones(batch, keys, dtype=torch.bool, device=device)
    return (rows[:, :, None] & columns[:, None, :])[:, None]


def a2d_loss(
    teacher: Tensor,
    student: Tensor,
    aligner: HeadAligner,
    *,
    query_mask: Tensor | None = None,
    key_mask: Tensor | None = None,
) -> Tensor:
    """Mean over samples and teacher heads of ``KL(softmax(T_i) || softmax(aligner(S)_i))`` over the map.

    Args:
        teacher: teacher attention probabilities ``[B, Ht, q, k]``.
        student: student attention probabilities ``[B, Hs, q, k]``.
        aligner: the pair's :class:`HeadAligner` (``Hs -> Ht``).
        query_mask: ``[B, q]`` bool, True for real query rows (None: all).
        key_mask: ``[B, k]`` bool, True for real keys (None: all).
    """
    check_maps(teacher, student, query_mask)
    aligned = aligner(student)
    if aligned.shape != teacher.shape:
        raise ValueError(
            f"the aligner maps the student to {tuple(aligned.shape)}, the teacher is {tuple(teacher.shape)}"
        )
    dtype = loss_dtype(teacher, aligned)
    teacher, aligned = teacher.to(dtype), aligned.to(dtype)
    valid = _valid_entries(teacher.shape, query_mask, key_mask, teacher.device)
    if valid is not None:
        teacher = teacher.masked_fill(~valid, float("-inf"))
        aligned = aligned.masked_fill(~valid, float("-inf"))
    teacher_log = torch.log_softmax(teacher.flatten(2), dim=-1)  # (B, Ht, q*k)
    aligned_log = torch.log_softmax(aligned.flatten(2), dim=-1)
    terms = teacher_log.exp() * (teacher_log - aligned_log)
    if valid is not None:  # padding: p = 0, and -inf - -inf is nan
        terms = torch.where(valid.flatten(2), terms, terms.new_zeros(()))
    return terms.sum(-1).mean()
