"""Save and load task models as ``model.safetensors`` + ``config.json`` (never pickle).

``config.json`` carries everything needed to rebuild and use the model in a fresh process: the
model config, the answer vocabulary and the preprocessing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from amad.atomic import atomic_dir
from amad.config import ModelConfig, from_dict, to_dict
from amad.errors import AmadError
from amad.models.vqa import VQAModel
from amad.preprocess import Preprocess

FORMAT = "amad.vqa/1"
WEIGHTS = "model.safetensors"
CONFIG = "config.json"


@dataclass
class LoadedModel:
    model: VQAModel
    answers: list[str]
    preprocess: Preprocess
    extra: dict[str, Any]


def save_model(
    directory: str | Path,
    model: VQAModel,
    answers: list[str],
    *,
    extra: dict[str, Any] | None = None,
    files: dict[str, Any] | None = None,
) -> None:
    """Atomically write ``directory`` with weights, config and optional extra files.

    Args:
        directory: output folder (replaced as a whole).
        model: the model to save.
        answers: answer vocabulary, index -> answer string.
        extra: JSON-able information stored under ``"extra"`` in ``config.json``.
        files: extra files to write: name -> dict of tensors (safetensors) or JSON-able data.
    """
    if len(answers) != model.num_answers:
        raise ValueError(f"{len(answers)} answers for a model with {model.num_answers} outputs")
    with atomic_dir(directory) as staging:
        state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
        save_file(state, staging / WEIGHTS)
        config = {
            "format": FORMAT,
            "model": to_dict(model.config),
            "answers": list(answers),
            "preprocess": model.preprocess.to_dict(),
            "extra": extra or {},
        }
        (staging / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
        for name, content in (files or {}).items():
            if isinstance(content, dict) and all(isinstance(v, torch.Tensor) for v in content.values()):
                save_file({k: v.detach().cpu().contiguous() for k, v in content.items()}, staging / name)
            else:
                (staging / name).write_text(json.dumps(content, indent=2) + "\n")


def read_model_config(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / CONFIG
    if not path.exists():
        raise AmadError(f"{directory}: not a model folder (no {CONFIG}); expected e.g. models/teacher")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise AmadError(f"{path}: invalid JSON at line {error.lineno}: {error.msg}") from None
    if config.get("format") != FORMAT:
        raise AmadError(f"{path}: format {config.get('format')!r} is not {FORMAT!r}")
    return config


def load_model(directory: str | Path, *, device: str | torch.device = "cpu") -> LoadedModel:
    """Rebuild a saved model from its folder alone (eval mode)."""
    directory = Path(directory)
    config = read_model_config(directory)
    model_config = from_dict(ModelConfig, config["model"], source=str(directory / CONFIG))
    model = VQAModel(model_config, num_answers=len(config["answers"]))
    weights = directory / WEIGHTS
    if not weights.exists():
        raise AmadError(f"{directory}: missing {WEIGHTS}")
    model.load_state_dict(load_file(weights, device=str(device)))
    model.to(device).eval()
    return LoadedModel(
        model=model,
        answers=list(config["answers"]),
        preprocess=Preprocess.from_dict(config["preprocess"]),
        extra=config.get("extra", {}),
    )


def load_pretrained(model: VQAModel, path: str | Path) -> tuple[int, int]:
    """Initialise ``model`` from a model folder or ``.safetensors`` file, where shapes match.

    Returns (tensors loaded, tensors in the model). Raises if nothing matches.
    """
    path = Path(path)
    weights = path / WEIGHTS if path.is_dir() else path
    if not weights.exists():
        raise AmadError(f"pretrained: {weights} not found")
    source = load_file(weights)
    own = model.state_dict()
    matching = {k: v for k, v in source.items() if k in own and own[k].shape == v.shape}
    if not matching:
        raise AmadError(f"pretrained: no tensor of {weights} matches the model's names and shapes")
    model.load_state_dict(matching, strict=False)
    return len(matching), len(own)
