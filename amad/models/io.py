"""Save and load task models as ``model.safetensors`` + ``config.json`` (never pickle).

``config.json`` carries everything needed to rebuild and use the model in a fresh process: the
task, the model config, the task state (VQA: the answer vocabulary) and the preprocessing.
Folders written before tasks were plug-ins (format ``amad.vqa/1``) still load, as ``vqa`` models.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from amad.atomic import atomic_dir
from amad.config.typed import from_dict, to_dict
from amad.contracts.task import Task, get_task
from amad.data.preprocess import Preprocess
from amad.errors import AmadError, ConfigError

FORMAT = "amad/2"
LEGACY_VQA_FORMAT = "amad.vqa/1"
WEIGHTS = "model.safetensors"
CONFIG = "config.json"


@dataclass
class LoadedModel:
    """A saved model, rebuilt.

    Attributes:
        task: the task plug-in the model belongs to.
        model: the torch module (eval mode).
        config: its model config (the task's config type).
        state: the task state saved with it (VQA: ``{"answers": [...]}``).
        preprocess: its input preprocessing.
        extra: what the training job stored (role, history, method, layer pairs, ...).
    """

    task: Task
    model: torch.nn.Module
    config: Any
    state: dict
    preprocess: Preprocess
    extra: dict[str, Any]

    @property
    def task_name(self) -> str:
        return self.task.name


def save_model(
    directory: str | Path,
    task: Task,
    model: torch.nn.Module,
    state: dict,
    preprocess: Preprocess,
    *,
    extra: dict[str, Any] | None = None,
    files: dict[str, Any] | None = None,
) -> None:
    """Atomically write ``directory`` with weights, config and optional extra files.

    Args:
        directory: output folder (replaced as a whole).
        task: the task the model belongs to.
        model: the model to save; its ``config`` attribute is the model config.
        state: the task state (JSON-able).
        preprocess: the model's preprocessing.
        extra: JSON-able information stored under ``"extra"`` in ``config.json``.
        files: extra files to write: name -> dict of tensors (safetensors) or JSON-able data.
    """
    with atomic_dir(directory) as staging:
        weights = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
        save_file(weights, staging / WEIGHTS)
        config = {
            "format": FORMAT,
            "task": task.name,
            "model": to_dict(model.config),
            "state": state,
            "preprocess": preprocess.to_dict(),
            "extra": extra or {},
        }
        (staging / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
        for name, content in (files or {}).items():
            if isinstance(content, dict) and all(isinstance(v, torch.Tensor) for v in content.values()):
                save_file({k: v.detach().cpu().contiguous() for k, v in content.items()}, staging / name)
            else:
                (staging / name).write_text(json.dumps(content, indent=2) + "\n")


def read_model_config(directory: str | Path) -> dict[str, Any]:
    """``config.json`` of a model folder, in the current format (legacy VQA folders are converted)."""
    path = Path(directory) / CONFIG
    if not path.exists():
        raise AmadError(f"{directory}: not a model folder (no {CONFIG}); expected e.g. models/teacher")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise AmadError(f"{path}: invalid JSON at line {error.lineno}: {error.msg}") from None
    if config.get("format") == LEGACY_VQA_FORMAT:  # before plug-in tasks and Hugging Face text towers
        state = {"answers": config.pop("answers")}
        text = {**config["model"]["text"], "hf_model": None, "hf_pretrained": False}
        vision = {k: v for k, v in config["model"]["vision"].items() if k != "timm_pretrained"}
        model = {**config["model"], "text": text, "vision": {**vision, "timm_weights": None}}
        config = {**config, "format": FORMAT, "task": "vqa", "state": state, "model": model}
    if config.get("format") != FORMAT:
        raise AmadError(
            f"{path}: format {config.get('format')!r} is not {FORMAT!r}; re-create the model with this "
            "version (dvc repro)"
        )
    return config


def read_model_spec(directory: str | Path) -> tuple[Task, Any]:
    """The task and the model config of a saved model, without building it."""
    return _spec(Path(directory), read_model_config(directory))


def _spec(directory: Path, config: dict) -> tuple[Task, Any]:
    source = str(directory / CONFIG)
    try:
        task = get_task(config["task"], "task")
        return task, from_dict(task.model_config, config["model"], "model", source=source)
    except ConfigError as error:
        raise AmadError(
            f"{source}: {error.key}: {error.reason}; re-create the model with this version (dvc repro)"
        ) from None


def load_model(directory: str | Path, *, device: str | torch.device = "cpu") -> LoadedModel:
    """Rebuild a saved model from its folder alone (eval mode)."""
    directory = Path(directory)
    config = read_model_config(directory)
    task, model_config = _spec(directory, config)
    model = task.build_model(task.without_pretrained_weights(model_config), config["state"])
    weights = directory / WEIGHTS
    if not weights.exists():
        raise AmadError(f"{directory}: missing {WEIGHTS}")
    model.load_state_dict(load_file(weights, device=str(device)))
    model.to(device).eval()
    return LoadedModel(
        task=task,
        model=model,
        config=model_config,
        state=config["state"],
        preprocess=task.preprocess_from_dict(config["preprocess"]),
        extra=config.get("extra", {}),
    )


def load_pretrained(model: torch.nn.Module, path: str | Path) -> tuple[int, int]:
    """Initialise ``model`` from a model folder or ``.safetensors`` file, where names and shapes match.

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
