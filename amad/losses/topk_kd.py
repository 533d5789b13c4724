"""Token-level output distillation for generative students: KL over the vocabulary at every position,
from the teacher's top-k logits.

A teacher's full logits over a vocabulary are large (``[positions, V]`` per sample); the teacher cache
keeps its ``k`` largest per position. The teacher's distribution is the softmax of those ``k`` logits
(renormalised over them), and the loss is ``T^2 * KL(p_teacher || softmax(z_s / T))`` with the
student's distribution over the whole vocabulary, averaged over the real (non-padding) target
positions. With ``k`` covering the vocabulary it is the exact KL of :func:`amad.losses.logit.logit_kd_loss`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def top_k_logits(logits: Tensor, k: int | None) -> tuple[Tensor, Tensor]:
    """The ``k`` largest logits of ``[..., V]`` and their token ids (``k`` None or >= V: all of them,
    in vocabulary order), ``([..., k] float, [..., k] int64)``."""
    vocab = logits.shape[-1]
    if k is None or k >= vocab:
        ids = torch.arange(vocab, device=logits.device).expand(logits.shape)
        return logits, ids
    values, ids = logits.topk(k, dim=-1)
    return values, ids


def top_k_kd_loss(
    student_logits: Tensor, teacher_values: Tensor, teacher_ids: Tensor, mask: Tensor, *, temperature: float = 1.0
) -> Tensor:
    """``T^2 * KL(teacher || student)`` per position, averaged over the positions where ``mask`` is True.

    Args:
        student_logits: ``[B, T, V]``.
        teacher_values: the teacher's top-k logits ``[B, T, k]`` (:func:`top_k_logits`).
        teacher_ids: their token ids ``[B, T, k]``.
        mask: ``[B, T]`` bool, True for positions with a real target.
        temperature: ``T`` > 0.
    """
    if not temperature > 0:
        raise ValueError(f"KD temperature must be > 0, got {temperature}")
    if not mask.any():
        return student_logits.sum() * 0.0
    student = F.log_softmax(student_logits[mask].float() / temperature, dim=-1)  # (N, V)
    teacher = F.log_softmax(teacher_values[mask].float() / temperature, dim=-1)  # (N, k)
    gathered = student.gather(-1, teacher_ids[mask])  # (N, k)
    kl = (teacher.exp() * (teacher - gathered)).sum(-1)
    return kl.mean() * temperature**2
