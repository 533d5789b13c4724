"""Sequence-level distillation for captioning: the teacher's caption of every training image, and the
training split with those captions as targets (method ``sequence``, stage ``teacher_sequences``).

Rows are ``{"id": image id, "caption": text}``, one per training image in the split's order.
"""

from __future__ import annotations

from typing import Any

from amad.errors import DataError


def teacher_captions(predictor: Any, dataset: Any, generation: Any, device: Any) -> list[dict]:
    """The predictor's caption of every image of ``dataset`` (a PairDataset) decoded with ``generation``."""
    from amad.tasks.captioning.evaluation import split_captions

    captions = split_captions(predictor.with_settings(generation=generation), dataset, device=device)
    return [{"id": record.id, "caption": caption} for record, caption in zip(dataset.records, captions)]


def with_teacher_captions(dataset: Any, rows: list[dict], targets: str, source: str) -> Any:
    """``dataset`` with the teacher's captions as its targets (``replace``: in place of each reference,
    ``add``: as one more). An image whose teacher caption is empty keeps its references alone."""
    if len(rows) != len(dataset.records):
        raise DataError(
            f"{source}: {len(rows)} teacher captions for {len(dataset.records)} training images "
            "(re-run the stage: dvc repro teacher_sequences)"
        )
    captions = []
    for number, (row, record) in enumerate(zip(rows, dataset.records), start=1):
        if not isinstance(row, dict) or row.get("id") != record.id or not isinstance(row.get("caption"), str):
            raise DataError(
                f"{source}:{number}: expected {{'id': {record.id!r}, 'caption': text}} (the training split's "
                f"image {number}), got {row!r}; re-run the stage: dvc repro teacher_sequences"
            )
        caption = row["caption"].strip()
        if not caption:
            captions.append(record.captions)
        elif targets == "replace":
            captions.append((caption,) * len(record.captions))
        else:
            captions.append((*record.captions, caption))
    return dataset.with_captions(captions)
