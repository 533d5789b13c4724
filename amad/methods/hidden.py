"""``hidden``: per-layer hidden-state MSE, through a learned projection where the widths differ.

The hidden state of a layer is the output of the block that holds the paired attention module
(the residual stream after that layer), over the group's tokens; padding tokens are left out. The
feature distillation that CLIP-KD found strongest for CLIP students.
"""

from __future__ import annotations

from dataclasses import dataclass

from amad.config.typed import require_choice
from amad.contracts.method import METHODS, Method, Needs


@dataclass(frozen=True)
class HiddenSettings:
    """``distill.hidden``."""

    projection: str  # learned: Linear(student width -> teacher width) where they differ; identity where equal

    def validate(self, key: str) -> None:
        require_choice(self.projection, ("learned",), f"{key}.projection")


@METHODS.register("hidden")
class HiddenStateDistillation(Method):
    settings = HiddenSettings
    needs = Needs(hidden=True)
    term = "amad.methods.terms.hidden:HiddenStateTerm"
