"""Read the official VQAv2 question / annotation JSON with a COCO image folder.

Expected layout under ``data.path`` (as downloaded from the VQA site)::

    v2_OpenEnded_mscoco_train2014_questions.json   v2_mscoco_train2014_annotations.json
    v2_OpenEnded_mscoco_val2014_questions.json     v2_mscoco_val2014_annotations.json
    train2014/COCO_train2014_000000000009.jpg ...  val2014/COCO_val2014_000000000042.jpg ...

The official test split has no public answers, so ``train2014`` becomes ``train`` and
``val2014`` is divided by image (seeded) into ``val`` and ``test`` halves.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from amad.data.text import read_json_object
from amad.errors import DataError
from amad.tasks.vqa.manifest import Record


def _load_json(path: Path) -> dict:
    if not path.exists():
        raise DataError(f"{path}: not found (see the VQAv2 layout in docs/tasks/vqa.md)")
    return read_json_object(path)


def read_vqav2_split(root: Path, split: str) -> list[Record]:
    """Records of one official split (``train2014`` or ``val2014``), image paths relative to ``root``."""
    questions_path = root / f"v2_OpenEnded_mscoco_{split}_questions.json"
    annotations_path = root / f"v2_mscoco_{split}_annotations.json"
    questions = _load_json(questions_path).get("questions")
    annotations = _load_json(annotations_path).get("annotations")
    if not isinstance(questions, list):
        raise DataError(f"{questions_path}: missing 'questions' list")
    if not isinstance(annotations, list):
        raise DataError(f"{annotations_path}: missing 'annotations' list")
    answers_by_question = {}
    for index, annotation in enumerate(annotations):
        try:
            answers_by_question[annotation["question_id"]] = (
                [a["answer"] for a in annotation["answers"]],
                annotation.get("answer_type"),
            )
        except (KeyError, TypeError):
            raise DataError(f"{annotations_path}: annotation #{index} lacks question_id / answers[].answer") from None
    records = []
    for index, question in enumerate(questions):
        try:
            question_id, image_id, text = question["question_id"], question["image_id"], question["question"]
            image = f"{split}/COCO_{split}_{int(image_id):012d}.jpg"
        except (KeyError, TypeError, ValueError):
            raise DataError(
                f"{questions_path}: question #{index} lacks question_id / image_id (an integer) / question"
            ) from None
        if question_id not in answers_by_question:
            raise DataError(f"{annotations_path}: no annotation for question_id {question_id}")
        if not (root / image).is_file():
            raise DataError(f"{questions_path}: question #{index}: image not found: {root / image}")
        answers, answer_type = answers_by_question[question_id]
        records.append(Record(str(question_id), image, text, tuple(answers), answer_type))
    return records


def read_vqav2(root: str | Path, seed: int) -> dict[str, list[Record]]:
    """``{"train", "val", "test"}`` records; val2014 is split in half by image id."""
    root = Path(root)
    train = read_vqav2_split(root, "train2014")
    held_out = read_vqav2_split(root, "val2014")
    images = sorted({record.image for record in held_out})
    order = np.random.default_rng(seed).permutation(len(images))
    test_images = {images[i] for i in order[: len(images) // 2]}
    return {
        "train": train,
        "val": [r for r in held_out if r.image not in test_images],
        "test": [r for r in held_out if r.image in test_images],
    }
