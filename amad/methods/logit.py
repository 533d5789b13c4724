"""``logit``: output distillation only (Hinton KD for VQA's answer logits)."""

from __future__ import annotations

from amad.methods import METHODS
from amad.methods.base import Method, Needs


@METHODS.register("logit")
class OutputDistillation(Method):
    """Task loss + the task's output-distillation term; every attention method adds its term to this."""

    needs = Needs()
