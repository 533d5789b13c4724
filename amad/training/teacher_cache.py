"""The frozen teacher's outputs, computed once per distillation run instead of at every step.

The teacher is frozen and in eval mode and a training sample's inputs are the same every epoch
(no augmentation), so its outputs and attention records for that sample never change: distilling
for E epochs computes them E times. :func:`build_teacher_cache` computes them in one in-order
pass over the training set, in fixed batches, so the values do not depend on the shuffled data
order or on where a resumed run starts; steps then look them up by sample index. On the default
profile the teacher's forward pass is about a third of a distillation step on the CPU.

The cache lives on the training device and is used only when it fits ``runtime.teacher_cache_mib``
(estimated from the first batch); otherwise every step runs the teacher, as before.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from amad.distill.capture import AttentionRecord

RECORD_FIELDS = tuple(f.name for f in dataclasses.fields(AttentionRecord))


class TeacherCache:
    """The teacher's targets (``Task.teacher_targets``: named tensors ``[N, ...]``) and attention
    records ``[N, ...]`` per training sample index."""

    def __init__(self, targets: dict[str, Tensor], records: dict[str, AttentionRecord]) -> None:
        self.targets = targets
        self.records = records

    @property
    def nbytes(self) -> int:
        records = sum(t.nbytes for r in self.records.values() for t in _tensors(r))
        return sum(t.nbytes for t in self.targets.values()) + records

    def lookup(self, index: Tensor) -> tuple[dict[str, Tensor], dict[str, AttentionRecord]]:
        """The teacher's targets and attention records for the samples ``index`` (a batch's ``"index"``)."""
        index = index.to(next(iter(self.targets.values())).device)
        records = {name: _map_record(r, lambda t: t.index_select(0, index)) for name, r in self.records.items()}
        return {name: t.index_select(0, index) for name, t in self.targets.items()}, records


def _tensors(record: AttentionRecord) -> list[Tensor]:
    return [t for t in (getattr(record, f) for f in RECORD_FIELDS) if t is not None]


def _map_record(record: AttentionRecord, function: Callable[[Tensor], Tensor]) -> AttentionRecord:
    """``record`` with ``function`` applied to each tensor it holds."""
    return AttentionRecord(
        **{f: None if getattr(record, f) is None else function(getattr(record, f)) for f in RECORD_FIELDS}
    )


@torch.no_grad()
def build_teacher_cache(
    teacher: nn.Module,
    dataset: Dataset,
    open_capture: Callable[[], Any],
    task: Any,
    *,
    device: torch.device,
    batch_size: int,
    max_mib: float,
    top_k: int | None = None,
    log: Callable[[str], None] = print,
) -> TeacherCache | None:
    """Run ``teacher`` over ``dataset`` in order, recording the task's targets of its outputs
    (``task.teacher_targets``) and what ``open_capture()`` captures.

    Args:
        teacher: the frozen teacher (named outputs, batch first).
        dataset: the training set.
        open_capture: a new capture context of the teacher's distilled modules.
        task: the task (its ``model_inputs`` and ``teacher_targets``).
        top_k: ``distill.output.top_k`` (``teacher_targets``' argument).

    Returns None (and says why) when the targets would take more than ``max_mib`` MiB.
    """
    if max_mib <= 0:
        return None

    def empty(t: Tensor) -> Tensor:  # room for the whole dataset
        return t.new_empty(len(dataset), *t.shape[1:])

    cache: TeacherCache | None = None
    start = 0
    for batch in DataLoader(dataset, batch_size=batch_size):
        batch = {k: v.to(device) if isinstance(v, Tensor) else v for k, v in batch.items()}
        with open_capture() as capture:
            targets = task.teacher_targets(teacher(*task.model_inputs(batch)), batch, top_k)
        size = len(batch["index"])
        if cache is None:
            needed_mib = TeacherCache(targets, capture.records).nbytes / size * len(dataset) / 2**20
            if needed_mib > max_mib:
                log(
                    f"teacher outputs not cached: {needed_mib:.0f} MiB needed, runtime.teacher_cache_mib is "
                    f"{max_mib:g}; the teacher runs at every step"
                )
                return None
            empty_targets = {name: empty(t) for name, t in targets.items()}
            cache = TeacherCache(empty_targets, {n: _map_record(r, empty) for n, r in capture.records.items()})
        rows = slice(start, start + size)
        for name, target in targets.items():
            cache.targets[name][rows] = target
        for name, record in capture.records.items():
            for stored, computed in zip(_tensors(cache.records[name]), _tensors(record)):
                stored[rows] = computed
        start += size
    if cache is not None:
        log(f"teacher outputs cached for {start} training samples ({cache.nbytes / 2**20:.0f} MiB)")
    return cache
