"""The distillation objective: one entry point from captures and logits to the total loss.

``total = task_weight * CE(student, targets)
        + logit_weight * KD(student, teacher)                     (all methods but "none")
        + attention_weight * mean over layer pairs of the method's attention term``

so every attention method adds its term to the same ``logit`` objective and comparisons isolate
the attention term.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from amad.attention import AttentionCapture, AttentionRecords
from amad.losses import (
    AttentionProjection,
    amad_loss_and_weights,
    logit_kd_loss,
    one_to_one_loss,
    relation_loss,
    task_loss,
)
from amad.temperature import AlignmentTemperature

METHODS = ("none", "logit", "one2one", "minilm", "amad")
ATTENTION_METHODS = ("one2one", "minilm", "amad")


@dataclass(frozen=True)
class AmadSettings:
    """AMAD term settings (``params.yaml: distill.amad``)."""

    variant: str = "kl"
    temperature: float = 1.0
    temperature_schedule: str = "constant"
    final_temperature: float | None = None


@dataclass(frozen=True)
class ObjectiveConfig:
    """Weights and settings of the distillation objective (``params.yaml: distill``)."""

    method: str = "amad"
    task_weight: float = 1.0
    logit_weight: float = 1.0
    logit_temperature: float = 2.0
    attention_weight: float = 1.0
    amad: AmadSettings = field(default_factory=AmadSettings)
    head_mismatch: str = "truncate"
    num_relation_heads: int = 4
    relations: tuple[str, ...] = ("qq", "kk", "vv")

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"distillation method must be one of {METHODS}, got {self.method!r}")


@dataclass
class ObjectiveOutput:
    """Result of one objective evaluation.

    Attributes:
        total: the scalar to back-propagate.
        terms: named, detached scalar terms for logging (``task``, ``logit_kd``, ``attention``,
            ``layer/<student module>`` (the attention term of one layer), ``temperature``).
        alignment: AMAD weights per student module, ``[Ht, Hs]`` averaged over the batch (detached).
    """

    total: Tensor
    terms: dict[str, float]
    alignment: dict[str, Tensor]


class DistillationObjective(nn.Module):
    """Total distillation loss for one method; holds the learned parts (temperature, projections).

    Args:
        config: the objective settings.
        layer_pairs: ``(teacher module path, student module path)`` pairs to distil.
        map_sizes: ``q * k`` per student module path; needed only by the AMAD ``projection`` variant.
    """

    def __init__(
        self,
        config: ObjectiveConfig,
        layer_pairs: Sequence[tuple[str, str]] = (),
        *,
        map_sizes: Mapping[str, int] | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.layer_pairs = list(layer_pairs)
        if config.method in ATTENTION_METHODS and not self.layer_pairs:
            raise ValueError(f"method {config.method!r} needs at least one attention layer pair")
        self.temperature = AlignmentTemperature(
            config.amad.temperature,
            schedule=config.amad.temperature_schedule,
            final=config.amad.final_temperature,
        )
        self.projections = nn.ModuleDict()
        if config.method == "amad" and config.amad.variant == "projection":
            missing = [s for _, s in self.layer_pairs if not map_sizes or s not in map_sizes]
            if missing:
                raise ValueError(f"the projection variant needs map sizes for {missing}")
            for index, (_, student) in enumerate(self.layer_pairs):
                self.projections[str(index)] = AttentionProjection(map_sizes[student])

    @property
    def needs_qkv(self) -> bool:
        return self.config.method == "minilm"

    @property
    def teacher_modules(self) -> list[str]:
        return list(dict.fromkeys(t for t, _ in self.layer_pairs))

    @property
    def student_modules(self) -> list[str]:
        return list(dict.fromkeys(s for _, s in self.layer_pairs))

    def set_progress(self, fraction: float) -> None:
        """Training progress in ``[0, 1]`` (drives a scheduled temperature)."""
        self.temperature.set_progress(fraction)

    def forward(
        self,
        *,
        student_logits: Tensor,
        targets: Tensor,
        teacher_logits: Tensor | None = None,
        teacher_capture: AttentionCapture | AttentionRecords | None = None,
        student_capture: AttentionCapture | None = None,
        query_masks: Mapping[str, Tensor | None] | None = None,
        key_masks: Mapping[str, Tensor | None] | None = None,
    ) -> ObjectiveOutput:
        """Evaluate the objective.

        Args:
            student_logits: ``[B, C]``.
            targets: class indices ``[B]`` or soft answer scores ``[B, C]``.
            teacher_logits: ``[B, C]``; required for every method but ``none``.
            teacher_capture: capture of the teacher's forward pass, or its cached records (attention methods).
            student_capture: capture of the student's forward pass (attention methods).
            query_masks: ``[B, q]`` bool mask of real query rows per *student* module path (e.g.
                text padding); absent or None means all rows are real.
            key_masks: ``[B, k]`` bool mask of real key tokens per student module path, used by the
                ``minilm`` k-k / v-v relations (the query mask for text self-attention, None for
                cross-attention to image tokens).
        """
        config = self.config
        query_masks = query_masks or {}
        key_masks = key_masks or {}
        task = task_loss(student_logits, targets)
        terms = {"task": task.detach()}
        total = config.task_weight * task
        alignment: dict[str, Tensor] = {}
        if config.method != "none":
            if teacher_logits is None:
                raise ValueError(f"method {config.method!r} needs teacher logits")
            kd = logit_kd_loss(student_logits, teacher_logits, temperature=config.logit_temperature)
            terms["logit_kd"] = kd.detach()
            total = total + config.logit_weight * kd
        if config.method in ATTENTION_METHODS:
            if teacher_capture is None or student_capture is None:
                raise ValueError(f"method {config.method!r} needs teacher and student attention captures")
            attention_terms = []
            for index, (teacher_name, student_name) in enumerate(self.layer_pairs):
                term, weights = self._attention_term(
                    index,
                    teacher_capture.records.get(teacher_name),
                    student_capture.records.get(student_name),
                    teacher_name,
                    student_name,
                    query_masks.get(student_name),
                    key_masks.get(student_name),
                )
                terms[f"layer/{student_name}"] = term.detach()
                attention_terms.append(term)
                if weights is not None:
                    alignment[student_name] = weights.detach().mean(0)  # (Ht, Hs)
            attention = torch.stack(attention_terms).mean()
            terms["attention"] = attention.detach()
            total = total + config.attention_weight * attention
            if config.method == "amad":
                terms["temperature"] = torch.tensor(self.temperature.value())
        return ObjectiveOutput(total=total, terms={k: float(v) for k, v in terms.items()}, alignment=alignment)

    def _attention_term(
        self, index, teacher_record, student_record, teacher_name, student_name, query_mask, key_mask
    ) -> tuple[Tensor, Tensor | None]:
        for side, name, record in (
            ("teacher", teacher_name, teacher_record),
            ("student", student_name, student_record),
        ):
            if record is None or record.probs is None:
                raise KeyError(f"no {side} attention recorded for '{name}'")
        config = self.config
        if config.method == "one2one":
            loss = one_to_one_loss(
                teacher_record.probs, student_record.probs, head_mismatch=config.head_mismatch, query_mask=query_mask
            )
            return loss, None
        if config.method == "minilm":
            if student_record.q is None or teacher_record.q is None:
                raise KeyError(f"minilm needs q/k/v: capture '{teacher_name}' and '{student_name}' with qkv=True")
            loss = relation_loss(
                (teacher_record.q, teacher_record.k, teacher_record.v),
                (student_record.q, student_record.k, student_record.v),
                num_relation_heads=config.num_relation_heads,
                relations=config.relations,
                query_mask=query_mask,
                key_mask=key_mask,
            )
            return loss, None
        per_item, weights = amad_loss_and_weights(
            teacher_record.probs,
            student_record.probs,
            variant=config.amad.variant,
            temperature=self.temperature(),
            query_mask=query_mask,
            projection=self.projections[str(index)] if str(index) in self.projections else None,  # noqa: SIM401
        )
        return per_item.mean(), weights
