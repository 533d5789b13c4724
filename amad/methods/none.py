"""``none``: the student learns from the ground truth alone (no teacher)."""

from __future__ import annotations

from amad.contracts.method import METHODS, Method, Needs


@METHODS.register("none")
class GroundTruthOnly(Method):
    """Task loss only: the baseline every distillation method should beat."""

    needs = Needs(teacher=False, output_distillation=False)
