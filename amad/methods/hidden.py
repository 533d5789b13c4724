"""``hidden``: per-layer hidden-state MSE, through a learned projection where the widths differ.

The hidden state of a layer is the output of the block that holds the paired attention module
(the residual stream after that layer), over the group's tokens; padding tokens are left out. The
feature distillation that CLIP-KD found strongest for CLIP students.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from amad.attention import AttentionRecord
from amad.config import require_choice
from amad.losses.hidden import HiddenStateProjection, hidden_state_loss
from amad.methods import METHODS
from amad.methods.base import LayerPair, Method, Needs, record_field


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

    def __init__(self, settings: HiddenSettings, pairs: list[LayerPair]) -> None:
        super().__init__(settings, pairs)
        self.projections = nn.ModuleList(
            HiddenStateProjection(p.student_shape.width, p.teacher_shape.width)
            if p.student_shape.width != p.teacher_shape.width
            else nn.Identity()
            for p in self.pairs
        )

    def layer_term(
        self,
        index: int,
        teacher: AttentionRecord,
        student: AttentionRecord,
        query_mask: Tensor | None,
        key_mask: Tensor | None,
    ) -> tuple[Tensor, None]:
        pair = self.pairs[index]
        loss = hidden_state_loss(
            record_field(teacher, "hidden", pair.teacher, "teacher"),
            record_field(student, "hidden", pair.student, "student"),
            self.projections[index],
            token_mask=query_mask,
        )
        return loss, None
