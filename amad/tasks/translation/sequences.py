"""Sequence-level distillation for translation: the teacher's translation of every training sentence,
and the training split with those translations as targets (method ``sequence``, stage
``teacher_sequences``). Rows are ``{"id": pair id, "translation": text}``, one per training pair in
the split's order."""

from __future__ import annotations

from typing import Any

from amad.tasks.generative import teacher_outputs


def teacher_translations(predictor: Any, dataset: Any, generation: Any, device: Any) -> list[dict]:
    """The predictor's translation of every sentence of ``dataset`` decoded with ``generation``."""
    from amad.tasks.translation.evaluation import split_translations

    texts = split_translations(predictor.with_settings(generation=generation), dataset, device=device)
    return [{"id": pair.id, "translation": text} for pair, text in zip(dataset.pairs, texts)]


def with_teacher_translations(dataset: Any, rows: list[dict], targets: str, source: str) -> Any:
    """``dataset`` with the teacher's translations as targets (``replace``: in place of the reference,
    ``add``: as one more sample). A pair whose teacher translation is empty keeps its reference."""
    ids = [pair.id for pair in dataset.pairs]
    chosen = []
    for text, pair in zip(teacher_outputs(rows, ids, "translation", source, "pair"), dataset.pairs):
        if not text:
            chosen.append((pair.target,))
        elif targets == "replace":
            chosen.append((text,))
        else:
            chosen.append((pair.target, text))
    return dataset.with_targets(chosen)
