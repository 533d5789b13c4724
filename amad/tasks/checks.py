"""Checks and file reads the built-in two-tower tasks (VQA, retrieval) share."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from amad.config import require
from amad.errors import AmadError


def check_pretrained(config: Any, key: str) -> None:
    """``<key>.pretrained`` names an existing model folder or file (or is null)."""
    if config.pretrained is not None:
        require(Path(config.pretrained).exists(), f"{key}.pretrained", f"no such file or folder: {config.pretrained}")


def check_shared_preprocessing(teacher: Any, student: Any, key: str) -> None:
    """Teacher and student read the same inputs: one tokenizer, one image size, one context length."""
    require(
        student.text.hf_model == teacher.text.hf_model,
        f"{key}.text.hf_model",
        f"must equal teacher.text.hf_model ({teacher.text.hf_model}): teacher and students share the tokenizer",
    )
    for tower, field in (("vision", "image_size"), ("text", "context_length")):
        mine, theirs = getattr(getattr(student, tower), field), getattr(getattr(teacher, tower), field)
        require(
            mine == theirs,
            f"{key}.{tower}.{field}",
            f"must equal teacher.{tower}.{field} ({theirs}): teacher and students share the preprocessing",
        )


def read_summary(data_dir: Path, name: str) -> dict:
    """The prepared folder's summary file ``name`` (AmadError if ``prepare`` has not run)."""
    path = Path(data_dir) / name
    if not path.exists():
        raise AmadError(f"{path}: not found; run the prepare stage first (dvc repro prepare)")
    return json.loads(path.read_text())
