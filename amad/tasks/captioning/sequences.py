"""Sequence-level distillation for captioning: the teacher's caption of every training image, and the
training split with those captions as targets (method ``sequence``, stage ``teacher_sequences``).

Rows are ``{"id": image id, "caption": text}``, one per training image in the split's order.
"""

from __future__ import annotations

from typing import Any

from amad.tasks.generative import teacher_outputs


def teacher_captions(predictor: Any, dataset: Any, generation: Any, device: Any) -> list[dict]:
    """The predictor's caption of every image of ``dataset`` (a PairDataset) decoded with ``generation``."""
    from amad.tasks.captioning.evaluation import split_captions

    captions = split_captions(predictor.with_settings(generation=generation), dataset, device=device)
    return [{"id": record.id, "caption": caption} for record, caption in zip(dataset.records, captions)]


def with_teacher_captions(dataset: Any, rows: list[dict], targets: str, source: str) -> Any:
    """``dataset`` with the teacher's captions as its targets (``replace``: in place of each reference,
    ``add``: as one more). An image whose teacher caption is empty keeps its references alone."""
    ids = [record.id for record in dataset.records]
    captions = []
    for caption, record in zip(teacher_outputs(rows, ids, "caption", source, "image"), dataset.records):
        if not caption:
            captions.append(record.captions)
        elif targets == "replace":
            captions.append((caption,) * len(record.captions))
        else:
            captions.append((*record.captions, caption))
    return dataset.with_captions(captions)
