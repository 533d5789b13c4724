"""One distillation step: the frozen teacher, the student, and the captures the method needs."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from amad.contracts.method import LayerPair
from amad.contracts.method_term import MethodTerm
from amad.contracts.task import GroupShape
from amad.distill.capture import capture_attention
from amad.distill.layer_mapping import pair_modules
from amad.distill.objective import DistillationObjective, ObjectiveOutput
from amad.training.teacher_cache import TeacherCache


class FrozenTeacher(nn.Module):
    """A teacher that stays in eval mode and never receives gradients."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> FrozenTeacher:
        return super().train(False)

    def forward(self, *inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.model(*inputs)


def layer_pairs(
    task: Any,
    teacher: nn.Module,
    student: nn.Module,
    groups: tuple[str, ...],
    mapping: Any,
    shapes: dict[str, tuple[GroupShape, GroupShape]],
) -> list[LayerPair]:
    """Teacher / student module pairs over the selected groups, in group order, each by depth."""
    teacher_modules, student_modules = task.module_groups(teacher), task.module_groups(student)
    return [
        LayerPair(teacher_name, student_name, group, *shapes[group])
        for group in groups
        for teacher_name, student_name in pair_modules(teacher_modules[group], student_modules[group], mapping)
    ]


def capture_for(method: MethodTerm, model: nn.Module, side: str, *, detach: bool):
    """A capture of what ``method`` needs from ``model``'s paired modules (``side``: teacher or student)."""
    modules = list(dict.fromkeys(getattr(pair, side) for pair in method.pairs))
    needs = method.needs
    return capture_attention(model, modules, maps=needs.maps, qkv=needs.qkv, hidden=needs.hidden, detach=detach)


class DistillationStep:
    """``(student, batch) -> ObjectiveOutput``: teacher and student forward with the captures the method needs.

    The teacher's outputs reach the objective as the task's targets of them (``Task.teacher_targets``),
    computed here or, with a :class:`TeacherCache`, looked up by the batch's sample ``index``.
    """

    def __init__(
        self, task: Any, teacher: FrozenTeacher, objective: DistillationObjective, cache: TeacherCache | None = None
    ) -> None:
        self.task, self.teacher, self.objective, self.cache = task, teacher, objective, cache

    def teacher_targets(self, batch: dict) -> tuple[dict[str, torch.Tensor], dict]:
        if self.cache is not None:
            return self.cache.lookup(batch["index"])
        with torch.no_grad(), capture_for(self.objective.method, self.teacher.model, "teacher", detach=True) as capture:
            targets = self.task.teacher_targets(
                self.teacher(*self.task.model_inputs(batch)), batch, self.objective.top_k
            )
        return targets, capture.records

    def __call__(self, student: nn.Module, batch: dict) -> ObjectiveOutput:
        inputs = self.task.model_inputs(batch)
        needs = self.objective.method.needs
        if not needs.teacher:
            return self.objective(student_outputs=student(*inputs), batch=batch)
        teacher_targets, teacher_records = self.teacher_targets(batch)
        if not needs.layers:
            return self.objective(student_outputs=student(*inputs), teacher_targets=teacher_targets, batch=batch)
        inner = student.module if hasattr(student, "module") else student  # under DDP
        with capture_for(self.objective.method, inner, "student", detach=False) as capture:
            student_outputs = student(*inputs)
        return self.objective(
            student_outputs=student_outputs,
            teacher_targets=teacher_targets,
            teacher_records=teacher_records,
            student_records=capture.records,
            batch=batch,
        )


@torch.no_grad()
def mean_artefacts(
    step: DistillationStep, student: nn.Module, dataset: Dataset, device: torch.device, batch_size: int = 256
) -> dict[str, torch.Tensor]:
    """The method's artefact per distilled student module (AMAD: alignment weights ``[Ht, Hs]``),
    averaged over ``dataset`` with the method's final settings."""
    method, task = step.objective.method, step.task
    sums: dict[str, torch.Tensor] = {}
    student.eval()
    for batch in DataLoader(dataset, batch_size=batch_size):
        batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        inputs = task.model_inputs(batch)
        with capture_for(method, step.teacher.model, "teacher", detach=True) as teacher_capture:
            step.teacher(*inputs)
        with capture_for(method, student, "student", detach=True) as student_capture:
            student(*inputs)
        for index, pair in enumerate(method.pairs):
            query_mask, key_mask = task.attention_masks(pair.group, batch)
            _, artefact = method.layer_term(
                index,
                teacher_capture.records[pair.teacher],
                student_capture.records[pair.student],
                query_mask,
                key_mask,
            )
            if artefact is not None:
                sums[pair.student] = sums.get(pair.student, 0) + artefact.sum(0).cpu()
    return {name: total / len(dataset) for name, total in sums.items()}
