"""Distillation losses: AMAD and the baselines it is compared with.

The stable API (see DESIGN.md): :func:`alignment_weights`, :func:`amad_loss`,
:func:`one_to_one_loss`. All attention losses take probabilities ``[B, H, q, k]`` and an
optional ``query_mask`` ``[B, q]`` (True for real query rows).
"""

from amad.losses.amad import (
    VARIANTS,
    AttentionProjection,
    alignment_weights,
    amad_loss,
    amad_loss_and_weights,
    token_alignment_weights,
)
from amad.losses.hidden import HiddenStateProjection, hidden_state_loss
from amad.losses.logit import logit_kd_loss, task_loss
from amad.losses.one_to_one import HEAD_MISMATCH_POLICIES, match_teacher_heads, one_to_one_loss
from amad.losses.relation import relation_loss

__all__ = [
    "HEAD_MISMATCH_POLICIES",
    "VARIANTS",
    "AttentionProjection",
    "HiddenStateProjection",
    "alignment_weights",
    "amad_loss",
    "amad_loss_and_weights",
    "hidden_state_loss",
    "logit_kd_loss",
    "match_teacher_heads",
    "one_to_one_loss",
    "relation_loss",
    "task_loss",
    "token_alignment_weights",
]
