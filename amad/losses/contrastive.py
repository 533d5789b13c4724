"""CLIP losses on in-batch similarity logits: the symmetric contrastive loss and similarity distillation.

``logits[i, j]`` scores image ``i`` against caption ``j`` of the same batch. A batch may hold the
same image twice (two of its captions): every caption of an image counts as a match of it, so the
targets are the rows of the same-image matrix, normalised (with one caption per image this is
open_clip's ``ClipLoss``).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F


def _soft_cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    return -(targets * F.log_softmax(logits, dim=-1)).sum(-1).mean()


def contrastive_loss(logits: Tensor, image_ids: Tensor) -> Tensor:
    """Mean of the image-to-text and text-to-image cross-entropies of ``logits [B, B]``.

    Args:
        logits: image ``i`` x caption ``j`` scores.
        image_ids: ``[B]`` which image each pair shows (pairs of one image are all positives).
    """
    same = (image_ids[:, None] == image_ids[None, :]).to(logits.dtype)  # (B, B), symmetric
    targets = same / same.sum(-1, keepdim=True)
    return (_soft_cross_entropy(logits, targets) + _soft_cross_entropy(logits.t(), targets)) / 2


def similarity_distillation(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """KL divergence from the teacher's image-to-text and text-to-image distributions to the
    student's at ``temperature`` (times its square), averaged over rows and both directions
    (open_clip's distillation loss, TinyCLIP's affinity mimicking); 0 when the logits agree."""
    total = student_logits.new_zeros((), dtype=torch.float32)
    for student, teacher in ((student_logits, teacher_logits), (student_logits.t(), teacher_logits.t())):
        total = total + F.kl_div(
            F.log_softmax(student.float() / temperature, dim=-1),
            F.log_softmax(teacher.float() / temperature, dim=-1),
            log_target=True,
            reduction="batchmean",
        )
    return total / 2 * temperature**2


def pair_logits(scaled_images: Tensor, scaled_texts: Tensor) -> Tensor:
    """Scaled pair embeddings ``[B, E]`` (image, text) -> in-batch logits ``[B, B]``."""
    return scaled_images @ scaled_texts.t()


__all__ = ["contrastive_loss", "pair_logits", "similarity_distillation"]
