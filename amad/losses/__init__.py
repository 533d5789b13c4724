"""Distillation losses: AMAD and the baselines it is compared with.

The stable API (see DESIGN.md): :func:`alignment_weights`, :func:`amad_loss`,
:func:`one_to_one_loss`. All attention losses take probabilities ``[B, H, q, k]`` and an
optional ``query_mask`` ``[B, q]`` (True for real query rows).

The names below are loaded from their modules on first use, so importing a torch-free module of
this package (:mod:`amad.losses.options`) does not load torch; amad's own code imports each loss
from its module.
"""

from __future__ import annotations

import importlib
from typing import Any

_MODULE_OF = {
    "AMAD_VARIANTS": "options",
    "HEAD_MISMATCH_POLICIES": "options",
    "MAX_PROJECTION_FEATURES": "options",
    "RELATIONS": "options",
    "AttentionProjection": "amad",
    "alignment_weights": "amad",
    "amad_loss": "amad",
    "amad_loss_and_weights": "amad",
    "token_alignment_weights": "amad",
    "HiddenStateProjection": "hidden",
    "hidden_state_loss": "hidden",
    "logit_kd_loss": "logit",
    "task_loss": "logit",
    "match_teacher_heads": "one_to_one",
    "one_to_one_loss": "one_to_one",
    "relation_loss": "relation",
}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'amad.losses' has no attribute {name!r}")
    return getattr(importlib.import_module(f"amad.losses.{_MODULE_OF[name]}"), name)
