"""The ``prepare`` stage's work: any data source -> ``data/prepared/`` in the manifest format.

Output: ``{train,val,test}.jsonl`` (image paths relative to the folder), ``images/`` and
``answers.json`` (the answer vocabulary built from the training split, plus how many questions
of each split have no answer in it: those are counted, never silently dropped).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from amad.atomic import atomic_dir
from amad.data.images import check_decodable, link_or_copy
from amad.tasks.vqa.answers import build_vocabulary, normalize_answer
from amad.tasks.vqa.config import DataConfig
from amad.tasks.vqa.manifest import SPLITS, Record, read_manifest, write_manifest
from amad.tasks.vqa.vqav2 import read_vqav2


def generate_shapes(config: DataConfig, seed: int, images: Path) -> dict[str, list[Record]]:
    """Generate and render the synthetic splits into ``images`` (PNG)."""
    shapes = config.shapes
    splits = {}
    for split_index, split in enumerate(SPLITS):
        generator = shapes.generator(seed * 1000 + split_index)
        records = []
        for index in range(getattr(shapes, split)):
            sample = generator.sample()
            name = f"images/{split}_{index:06d}.png"
            generator.render(sample.objects).save(images.parent / name)
            records.append(Record(f"{split}-{index}", name, sample.question, (sample.answer,), sample.family))
        splits[split] = records
    return splits


def import_images(records: dict[str, list[Record]], source_root: Path, out: Path) -> dict[str, list[Record]]:
    """Check that every referenced image decodes, hard-link (or copy) it under ``out/images`` and
    rewrite the paths."""
    imported = {}
    for split, split_records in records.items():
        rewritten = []
        for record in split_records:
            relative = Path("images") / record.image
            if not (out / relative).exists():
                check_decodable(source_root / record.image, f"{split} record {record.id!r}")
                link_or_copy(source_root / record.image, out / relative)
            rewritten.append(Record(record.id, relative.as_posix(), record.question, record.answers, record.family))
        imported[split] = rewritten
    return imported


def read_source(config: DataConfig, seed: int, out: Path, check_splits=None) -> dict[str, list[Record]]:
    """The records of every split, their images under ``out/images``; ``check_splits`` runs before
    any image is generated or imported."""
    if config.source == "shapes":
        if check_splits is not None:
            check_splits({split: getattr(config.shapes, split) for split in SPLITS})
        (out / "images").mkdir(parents=True)
        return generate_shapes(config, seed, out / "images")
    root = Path(config.path)
    if config.source == "jsonl":
        records = {split: read_manifest(root / f"{split}.jsonl") for split in SPLITS}
    else:
        records = read_vqav2(root, seed)
    if check_splits is not None:
        check_splits({split: len(split_records) for split, split_records in records.items()})
    return import_images(records, root, out)


def prepare(config: DataConfig, seed: int, out: str | Path, check_splits=None, log=None) -> dict:
    """Write ``out`` atomically; returns the summary stored in ``answers.json``.

    ``check_splits({split: samples})`` may refuse the splits (raising) before anything is written;
    ``log`` receives a short report.
    """
    with atomic_dir(out) as staging:
        splits = read_source(config, seed, staging, check_splits)
        answers = build_vocabulary((r.answers for r in splits["train"]), config.max_answers)
        vocabulary = set(answers)
        summary = {"answers": answers, "splits": {}}
        for split, records in splits.items():
            write_manifest(staging / f"{split}.jsonl", records)
            unanswerable = sum(not any(normalize_answer(a) in vocabulary for a in r.answers) for r in records)
            summary["splits"][split] = {
                "questions": len(records),
                "out_of_vocabulary": unanswerable,
                "families": dict(Counter(r.family or "all" for r in records)),
            }
        (staging / "answers.json").write_text(json.dumps(summary, indent=2) + "\n")
    if log is not None:
        splits = {name: split["questions"] for name, split in summary["splits"].items()}
        log(f"prepared {json.dumps(splits)} questions, {len(answers)} answers")
        for name, split in summary["splits"].items():
            if split["out_of_vocabulary"]:
                log(f"  {name}: {split['out_of_vocabulary']} questions have no answer in the vocabulary")
    return summary
