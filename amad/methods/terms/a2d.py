"""The ``a2d`` term: each pair's teacher maps against its learned alignment of the student's heads
(see :mod:`amad.methods.a2d`)."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from amad.contracts.method import LayerPair, Method
from amad.contracts.method_term import MethodTerm, record_field
from amad.distill.capture import AttentionRecord
from amad.losses.a2d import HeadAligner, a2d_loss


class AlignerTerm(MethodTerm):
    def __init__(self, method: type[Method], settings: Any, pairs: list[LayerPair]) -> None:
        super().__init__(method, settings, pairs)
        self.aligners = nn.ModuleList(HeadAligner(p.student_shape.heads, p.teacher_shape.heads) for p in self.pairs)

    def layer_term(
        self,
        index: int,
        teacher: AttentionRecord,
        student: AttentionRecord,
        query_mask: Tensor | None,
        key_mask: Tensor | None,
    ) -> tuple[Tensor, None]:
        pair = self.pairs[index]
        loss = a2d_loss(
            record_field(teacher, "probs", pair.teacher, "teacher"),
            record_field(student, "probs", pair.student, "student"),
            self.aligners[index],
            query_mask=query_mask,
            key_mask=key_mask,
        )
        return loss, None
