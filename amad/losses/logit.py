"""Logit distillation (Hinton et al.) and the ground-truth task loss it is combined with."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def logit_kd_loss(student_logits: Tensor, teacher_logits: Tensor, *, temperature: float = 1.0) -> Tensor:
    """``T^2 * KL(softmax(z_t / T) || softmax(z_s / T))``, averaged over the batch.

    Args:
        student_logits: ``[B, C]``.
        teacher_logits: ``[B, C]``.
        temperature: ``T`` > 0.
    """
    if not temperature > 0:
        raise ValueError(f"logit KD temperature must be > 0, got {temperature}")
    student_log_probs = F.log_softmax(student_logits.float() / temperature, dim=-1)
    teacher_log_probs = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    kl = F.kl_div(student_log_probs, teacher_log_probs, log_target=True, reduction="batchmean")
    return kl * temperature**2


def task_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Ground-truth cross-entropy; ``targets`` are class indices ``[B]`` or soft scores ``[B, C]``.

    Soft targets (VQA answer scores) are normalised per sample; samples whose scores are all zero
    (no answer in the vocabulary) are ignored.
    """
    if targets.dim() == 1:
        return F.cross_entropy(logits.float(), targets)
    mass = targets.sum(-1, keepdim=True)  # (B, 1)
    has_answer = (mass > 0).squeeze(-1)
    if not has_answer.any():
        return logits.sum() * 0.0
    soft = targets[has_answer] / mass[has_answer]
    return F.cross_entropy(logits[has_answer].float(), soft.float())
