"""The teacher's outputs of the training inputs, decoded once for sequence-level distillation.

Stage ``teacher_sequences`` writes ``<out>/summary.json`` and, for a generative task,
``<out>/train.jsonl`` (the task's rows, ``Task.sequence_targets``); the ``sequence`` method's
distillations read them back (:func:`sequence_training_set`). A task that is not generative gets a
summary that says so and no rows, so the stage is part of every pipeline at no cost.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from amad.atomic import atomic_dir
from amad.config.params import Params
from amad.errors import AmadError, ConfigError, DataError
from amad.models import load_model
from amad.pipeline.paths import TEACHER_SEQUENCES

SUMMARY = "summary.json"
ROWS = "train.jsonl"


def write_teacher_sequences(
    params: Params, teacher_dir: Path, data_dir: Path, out_dir: Path, *, device: Any = "cpu", log: Callable = print
) -> dict:
    """Decode the teacher's output of every training input with ``distill.sequence.generation``."""
    task = params.task_plugin()
    summary: dict[str, Any] = {"task": params.task, "generative": task.generative}
    if not task.generative:
        summary["note"] = f"task {params.task!r} is not generative: no sequence-level targets"
        with atomic_dir(out_dir) as staging:
            (staging / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")
        return summary
    settings = params.distill.settings.get("sequence")
    if settings is None:
        raise ConfigError("distill.sequence", "missing section: stage teacher_sequences decodes with its generation")
    generation = settings.generation
    loaded = load_model(teacher_dir, device=device)
    dataset = task.dataset(data_dir, "train", loaded.preprocess, loaded.state)
    loaded.model.eval()
    started = time.perf_counter()
    rows = task.sequence_targets(task.predictor(task.graphs(loaded.model)), dataset, generation, device)
    seconds = time.perf_counter() - started
    summary.update(inputs=len(rows), generation=dict(vars(generation)))  # no timing: the out stays byte-identical
    with atomic_dir(out_dir) as staging:
        with open(staging / ROWS, "w", encoding="utf-8") as stream:
            for row in rows:
                stream.write(json.dumps(row, ensure_ascii=False) + "\n")
        (staging / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")
    log(f"teacher_sequences: {len(rows)} training inputs decoded in {seconds:.0f} s")
    return summary


def read_teacher_sequences(folder: Path) -> list[dict]:
    """The rows of ``<folder>/train.jsonl``; DataError naming the file (and line) when missing or broken."""
    path = Path(folder) / ROWS
    if not path.is_file():
        raise DataError(
            f"{path}: missing; the sequence method reads the teacher's outputs: dvc repro teacher_sequences"
        )
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise DataError(f"{path}:{number}: not JSON ({error.msg})") from None
    return rows


def sequence_training_set(task: Any, train_set: Any, targets: str, folder: Path = TEACHER_SEQUENCES) -> Any:
    """The training split with the teacher's outputs as its targets (``distill.sequence.targets``)."""
    if not task.generative:
        raise AmadError(f"params.yaml: distill.methods: sequence needs a generative task, not {task.name!r}")
    return task.with_sequence_targets(train_set, read_teacher_sequences(folder), targets, str(Path(folder) / ROWS))
