"""``logit``: output distillation only (VQA: Hinton KD on the answer logits; retrieval: KL of the similarity distributions)."""

from __future__ import annotations

from amad.contracts.method import METHODS, Method, Needs


@METHODS.register("logit")
class OutputDistillation(Method):
    """Task loss + the task's output-distillation term; every attention method adds its term to this."""

    needs = Needs()
