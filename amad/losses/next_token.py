"""The next-token loss of a teacher-forced decoder (captioning, translation), padding left out."""

from __future__ import annotations

from torch import Tensor
from torch.nn import functional as F

from amad.data.preprocess import PAD_TOKEN_ID


def next_token_loss(logits: Tensor, tokens: Tensor) -> Tensor:
    """Mean next-token cross-entropy of ``logits [B, L-1, V]`` on ``tokens [B, L]`` (targets
    ``tokens[:, 1:]``; padding targets left out)."""
    targets = tokens[:, 1:]
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=PAD_TOKEN_ID)


def target_mask(tokens: Tensor) -> Tensor:
    """``[B, L-1]`` bool: the logits' positions whose target is a real token (the end token included)."""
    return tokens[:, 1:] != PAD_TOKEN_ID
