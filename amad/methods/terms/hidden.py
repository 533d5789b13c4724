"""The ``hidden`` term: hidden-state MSE through a learned projection (see :mod:`amad.methods.hidden`)."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from amad.contracts.method import LayerPair, Method
from amad.contracts.method_term import MethodTerm, record_field
from amad.distill.capture import AttentionRecord
from amad.losses.hidden import HiddenStateProjection, hidden_state_loss


class HiddenStateTerm(MethodTerm):
    def __init__(self, method: type[Method], settings: Any, pairs: list[LayerPair]) -> None:
        super().__init__(method, settings, pairs)
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
