"""``amad``: Attention Map Alignment Distillation.

Every teacher head's map is matched to a similarity-weighted mixture of all student heads
(``a_ij = softmax_j(cos(t_i, s_j) / tau)``); the alignment weights, averaged over the validation
set, are saved with the student as its artefact (``alignment.safetensors``).
"""

from __future__ import annotations

from dataclasses import dataclass

from amad.config.typed import require, require_choice
from amad.contracts.method import METHODS, Method, Needs
from amad.contracts.task import GroupShape
from amad.losses.options import AMAD_VARIANTS, MAX_PROJECTION_FEATURES, TEMPERATURE_SCHEDULES


@dataclass(frozen=True)
class AmadSettings:
    """``distill.amad``."""

    variant: str  # kl (Eq. 9), mse (Eq. 4-6), token (Eq. 12), projection (Eq. 10-11, small maps)
    temperature: float  # alignment softmax temperature tau (the paper: 1.0)
    temperature_schedule: str  # constant, linear, cosine (to final_temperature) or learned
    final_temperature: float | None  # end of a linear / cosine schedule

    def validate(self, key: str) -> None:
        require_choice(self.variant, AMAD_VARIANTS, f"{key}.variant")
        require(self.temperature > 0, f"{key}.temperature", f"must be > 0, got {self.temperature}")
        require_choice(self.temperature_schedule, TEMPERATURE_SCHEDULES, f"{key}.temperature_schedule")
        if self.final_temperature is not None:
            require(
                self.final_temperature > 0, f"{key}.final_temperature", f"must be > 0, got {self.final_temperature}"
            )
        require(
            self.temperature_schedule not in ("linear", "cosine") or self.final_temperature is not None,
            f"{key}.final_temperature",
            f"schedule {self.temperature_schedule!r} needs a final_temperature > 0",
        )


@METHODS.register("amad")
class AttentionMapAlignment(Method):
    settings = AmadSettings
    needs = Needs(maps=True)
    term = "amad.methods.terms.amad:AlignmentTerm"
    artefact_file = "alignment.safetensors"

    @classmethod
    def check(cls, settings: AmadSettings, key: str, groups: dict[str, tuple[GroupShape, GroupShape]]) -> None:
        if settings.variant != "projection":
            return
        for _, student in groups.values():
            size = student.queries * student.keys
            require(
                size <= MAX_PROJECTION_FEATURES,
                f"{key}.variant",
                f"projection learns a (q*k)^2 matrix and is for small maps; {student.key} has q*k = {size} > "
                f"{MAX_PROJECTION_FEATURES} (use kl, mse or token)",
            )
