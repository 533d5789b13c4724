"""The distillation objective: one entry point from outputs and captures to the total loss.

``total = task_weight * task_loss(student)
        + output_weight * output_kd(student, teacher)          (methods that distil outputs)
        + attention_weight * mean over layer pairs of the method's term``

The task supplies the task loss, the output-distillation term and the masks; the method supplies
the per-layer term. Every attention method adds its term to the same output-distillation
objective, so comparisons isolate the attention term.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from amad.contracts.method_term import MethodTerm
from amad.distill.capture import AttentionRecord


@dataclass
class ObjectiveOutput:
    """Result of one objective evaluation.

    Attributes:
        total: the scalar to back-propagate.
        terms: named scalar terms for logging (``task``, ``output_kd``, ``attention``,
            ``layer/<student module>`` (the term of one layer), and the method's summary).
        artefacts: per student module, the method's artefact averaged over the batch (AMAD: the
            alignment weights ``[Ht, Hs]``; detached).
    """

    total: Tensor
    terms: dict[str, float]
    artefacts: dict[str, Tensor]


class DistillationObjective(nn.Module):
    """Total loss of one method; holds the method (and so its learned parts).

    Args:
        task: the task plug-in (task loss, output distillation, masks).
        method: the method's term, built with its layer pairs (``Method.build``).
        weights: ``distill.weights`` (``task``, ``output``, ``attention``: one weight, or one per method).
        output_temperature: ``distill.output.temperature``.
        top_k: ``distill.output.top_k``: the teacher logits per position output distillation reads
            (large-vocabulary tasks; None: all).
        model_config: the student's config (the task loss may read it).
    """

    def __init__(
        self,
        task: Any,
        method: MethodTerm,
        weights: Any,
        output_temperature: float,
        *,
        top_k: int | None = None,
        model_config: Any = None,
    ) -> None:
        super().__init__()
        self.task = task
        self.method = method
        self.weights = weights
        self.output_temperature = output_temperature
        self.top_k = top_k
        self.model_config = model_config

    def set_progress(self, fraction: float) -> None:
        """Training progress in ``[0, 1]`` (drives scheduled settings such as AMAD's temperature)."""
        self.method.set_progress(fraction)

    def forward(
        self,
        *,
        student_outputs: dict[str, Tensor],
        batch: dict,
        teacher_targets: dict[str, Tensor] | None = None,
        teacher_records: Mapping[str, AttentionRecord] | None = None,
        student_records: Mapping[str, AttentionRecord] | None = None,
    ) -> ObjectiveOutput:
        """Evaluate the objective on one batch.

        Args:
            student_outputs: the student's named outputs on ``batch``.
            batch: the task's batch (targets, and what the masks come from).
            teacher_targets: the task's targets of the teacher's outputs (``Task.teacher_targets``);
                required when the method distils outputs.
            teacher_records: the teacher's captured records per module path (layer methods).
            student_records: the student's captured records per module path (layer methods).
        """
        needs = self.method.needs
        task = self.task.task_loss(student_outputs, batch, self.model_config)
        terms = {"task": task.detach()}
        total = self.weights.task * task
        artefacts: dict[str, Tensor] = {}
        if needs.output_distillation:
            if teacher_targets is None:
                raise ValueError(f"method {self.method.name!r} needs the teacher's outputs")
            kd = self.task.output_distillation(student_outputs, teacher_targets, batch, self.output_temperature)
            terms["output_kd"] = kd.detach()
            total = total + self.weights.output * kd
        if needs.layers:
            if teacher_records is None or student_records is None:
                raise ValueError(f"method {self.method.name!r} needs teacher and student captures")
            masks = {group: self.task.attention_masks(group, batch) for group in {p.group for p in self.method.pairs}}
            layer_terms = []
            for index, pair in enumerate(self.method.pairs):
                query_mask, key_mask = masks[pair.group]
                term, artefact = self.method.layer_term(
                    index, teacher_records.get(pair.teacher), student_records.get(pair.student), query_mask, key_mask
                )
                terms[f"layer/{pair.student}"] = term.detach()
                layer_terms.append(term)
                if artefact is not None:
                    artefacts[pair.student] = artefact.detach().mean(0)  # (Ht, Hs)
            attention = torch.stack(layer_terms).mean()
            terms["attention"] = attention.detach()
            total = total + self.weights.attention_for(self.method.name) * attention
        logged = {name: float(value) for name, value in terms.items()}
        logged.update(self.method.summary())
        return ObjectiveOutput(total=total, terms=logged, artefacts=artefacts)
