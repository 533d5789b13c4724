"""The ``prepare`` stage's work for retrieval: any caption source -> ``data/prepared/``.

Output: ``{train,val,test}.jsonl`` (one image a line with all its captions and, where the data
names it, its class; image paths relative to the folder), ``images/`` and ``summary.json`` (images
and captions per split, and the sorted class names of all splits, or null).
"""

from __future__ import annotations

import json
from pathlib import Path

from amad.atomic import atomic_dir
from amad.data.captions.records import class_names, split_records
from amad.data.captions.sources import write_records
from amad.tasks.retrieval.config import DataConfig

SUMMARY = "summary.json"


def prepare(config: DataConfig, seed: int, out: str | Path, check_splits=None, log=None) -> dict:
    """Write ``out`` atomically; returns the summary stored in ``summary.json``.

    ``check_splits({split: training pairs})`` may refuse the splits (raising) before any image is
    written; ``log`` receives a short report.
    """
    with atomic_dir(out) as staging:
        splits = split_records(config, seed, staging, check_splits)
        summary = {"splits": {}, "classes": class_names(splits)}
        for split, records in splits.items():
            write_records(staging / f"{split}.jsonl", records)
            summary["splits"][split] = {"images": len(records), "captions": sum(len(r.captions) for r in records)}
        (staging / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")
    if log is not None:
        log(f"prepared {json.dumps(summary['splits'])}")
    return summary
