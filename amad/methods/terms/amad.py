"""The ``amad`` term: each teacher head's map against the similarity-weighted mixture of the
student heads (see :mod:`amad.methods.amad`)."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from amad.contracts.method import LayerPair, Method
from amad.contracts.method_term import MethodTerm, record_field
from amad.distill.capture import AttentionRecord
from amad.losses.amad import AttentionProjection, amad_loss_and_weights
from amad.losses.temperature import AlignmentTemperature


class AlignmentTerm(MethodTerm):
    def __init__(self, method: type[Method], settings: Any, pairs: list[LayerPair]) -> None:
        super().__init__(method, settings, pairs)
        self.temperature = AlignmentTemperature(
            settings.temperature, schedule=settings.temperature_schedule, final=settings.final_temperature
        )
        self.projections = nn.ModuleList()
        if settings.variant == "projection":
            self.projections.extend(
                AttentionProjection(p.student_shape.queries * p.student_shape.keys) for p in self.pairs
            )

    def set_progress(self, fraction: float) -> None:
        self.temperature.set_progress(fraction)

    def layer_term(
        self,
        index: int,
        teacher: AttentionRecord,
        student: AttentionRecord,
        query_mask: Tensor | None,
        key_mask: Tensor | None,
    ) -> tuple[Tensor, Tensor]:
        pair = self.pairs[index]
        per_item, weights = amad_loss_and_weights(
            record_field(teacher, "probs", pair.teacher, "teacher"),
            record_field(student, "probs", pair.student, "student"),
            variant=self.config.variant,
            temperature=self.temperature(),
            query_mask=query_mask,
            projection=self.projections[index] if len(self.projections) else None,
        )
        return per_item.mean(), weights

    def summary(self) -> dict[str, float]:
        return {"temperature": float(self.temperature.value())}
