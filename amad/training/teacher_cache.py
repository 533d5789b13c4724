"""The frozen teacher's outputs, computed once per distillation run instead of at every step.

The teacher is frozen and in eval mode and a training sample's inputs are the same every epoch
(no augmentation), so its logits and attention records for that sample never change: distilling
for E epochs computes them E times. :func:`build_teacher_cache` computes them in one in-order
pass over the training set, in fixed batches, so the values do not depend on the shuffled data
order or on where a resumed run starts; steps then look them up by sample index. On the default
profile the teacher's forward pass is about a third of a distillation step on the CPU.

The cache lives on the training device and is used only when it fits ``distill.teacher_cache_mib``
(estimated from the first batch); otherwise every step runs the teacher, as before.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from amad.attention import AttentionRecord, AttentionRecords, capture_attention

RECORD_FIELDS = tuple(f.name for f in dataclasses.fields(AttentionRecord))


class TeacherCache:
    """Teacher logits ``[N, C]`` and attention records ``[N, ...]`` per training sample index."""

    def __init__(self, logits: Tensor, records: dict[str, AttentionRecord]) -> None:
        self.logits = logits
        self.records = records

    @property
    def nbytes(self) -> int:
        return self.logits.nbytes + sum(t.nbytes for r in self.records.values() for t in _tensors(r))

    def lookup(self, index: Tensor) -> tuple[Tensor, AttentionRecords]:
        """The teacher's logits and attention records for the samples ``index`` (a batch's ``"index"``)."""
        index = index.to(self.logits.device)
        records = {name: _map_record(r, lambda t: t.index_select(0, index)) for name, r in self.records.items()}
        return self.logits.index_select(0, index), AttentionRecords(records)


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
    modules: Sequence[str],
    *,
    qkv: bool,
    device: torch.device,
    batch_size: int,
    max_mib: float,
    log: Callable[[str], None] = print,
) -> TeacherCache | None:
    """Run ``teacher`` over ``dataset`` in order, recording its logits and the ``modules``' attention.

    Returns None (and says why) when the outputs would take more than ``max_mib`` MiB.
    """
    if max_mib <= 0:
        return None
    capture_target = teacher.model if hasattr(teacher, "model") else teacher

    def empty(t: Tensor) -> Tensor:  # room for the whole dataset
        return t.new_empty(len(dataset), *t.shape[1:])

    cache: TeacherCache | None = None
    start = 0
    for batch in DataLoader(dataset, batch_size=batch_size):
        pixels, tokens = batch["pixels"].to(device), batch["tokens"].to(device)
        with capture_attention(capture_target, list(modules), qkv=qkv, detach=True) as capture:
            logits = teacher(pixels, tokens)
        size = len(tokens)
        if cache is None:
            needed_mib = TeacherCache(logits, capture.records).nbytes / size * len(dataset) / 2**20
            if needed_mib > max_mib:
                log(
                    f"teacher outputs not cached: {needed_mib:.0f} MiB needed, distill.teacher_cache_mib is "
                    f"{max_mib:g}; the teacher runs at every step"
                )
                return None
            cache = TeacherCache(empty(logits), {n: _map_record(r, empty) for n, r in capture.records.items()})
        rows = slice(start, start + size)
        cache.logits[rows] = logits
        for name, record in capture.records.items():
            for stored, computed in zip(_tensors(cache.records[name]), _tensors(record)):
                stored[rows] = computed
        start += size
    if cache is not None:
        log(f"teacher outputs cached for {start} training samples ({cache.nbytes / 2**20:.0f} MiB)")
    return cache
