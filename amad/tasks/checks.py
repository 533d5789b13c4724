"""Checks and file reads the built-in tasks share (torch-free)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from amad.config.typed import require
from amad.errors import AmadError


def check_heads(width: int, heads: int, key: str, width_key: str | None = None) -> None:
    """``<key>.heads`` is >= 1 and divides the attention width (set by ``width_key``, default
    ``<key>.width``)."""
    width_key = width_key or f"{key}.width"
    require(heads >= 1, f"{key}.heads", f"must be >= 1, got {heads}")
    require(width >= 1, width_key, f"must be >= 1, got {width}")
    require(width % heads == 0, f"{key}.heads", f"{heads} heads do not divide the width {width} ({width_key})")


def check_tower(config: Any, key: str, width: int, width_key: str) -> None:
    """A transformer stack's config (``depth``, ``heads``, ``mlp_ratio``) at ``width``: heads divide
    it, at least one layer, a positive MLP ratio; ConfigError naming the key."""
    check_heads(width, config.heads, key, width_key)
    require(config.depth >= 1, f"{key}.depth", f"must be >= 1, got {config.depth}")
    require(config.mlp_ratio > 0, f"{key}.mlp_ratio", f"must be > 0, got {config.mlp_ratio}")


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


def check_hf_text_folder(text: Any, key: str, context: tuple[int, str] | None = None) -> None:
    """The local Hugging Face folder of a text tower (``<key>.hf_model``) holds a BERT-style encoder with
    enough positions for its context (``context``: the length and its key; default
    ``text.context_length``) and, where its weights are loaded, the configured shape (its tokenizer is
    checked with the models: :func:`amad.data.preprocess.check_hf_tokenizer`)."""
    folder = Path(text.hf_model)
    context_length, context_key = context or (text.context_length, f"{key}.context_length")
    require(
        (folder / "config.json").is_file(), f"{key}.hf_model", f"no Hugging Face model folder (config.json) at {folder}"
    )
    try:
        hf = json.loads((folder / "config.json").read_text())
    except json.JSONDecodeError as error:
        raise AmadError(f"{folder / 'config.json'}: invalid JSON at line {error.lineno}: {error.msg}") from None
    require(
        hf.get("model_type") == "bert",
        f"{key}.hf_model",
        f"a BERT-style encoder (model_type bert) is needed, {folder} holds {hf.get('model_type')!r}",
    )
    positions = hf.get("max_position_embeddings", context_length)
    require(
        context_length <= positions,
        context_key,
        f"{context_length} is longer than the model's {positions} positions",
    )
    if not text.hf_pretrained:
        return
    hidden = hf.get("hidden_size")
    for field, theirs in (
        ("width", hidden),
        ("depth", hf.get("num_hidden_layers")),
        ("mlp_ratio", hf.get("intermediate_size", 0) / max(1, hidden or 1)),
    ):
        require(
            getattr(text, field) == theirs,
            f"{key}.{field}",
            f"must be the pretrained model's {theirs} (hf_pretrained loads its weights), got {getattr(text, field)}",
        )


def check_open_clip_checkpoint(config: Any, key: str) -> None:
    """``checkpoint`` is a local file; an open_clip pretrained *tag* is refused in one line (it needs
    the network, and amad never downloads)."""
    path = Path(config.checkpoint)
    if path.is_file():
        return
    require(
        not path.is_dir(),
        f"{key}.checkpoint",
        f"{path} is a folder: name the checkpoint file inside it (open_clip_model.safetensors, open_clip_pytorch_model.bin)",
    )
    import open_clip

    tags = open_clip.list_pretrained_tags_by_model(config.architecture)
    if config.checkpoint in tags:
        raise AmadError(
            f"params.yaml: {key}.checkpoint: {config.checkpoint!r} is an open_clip pretrained tag, which needs the "
            "network to download; amad never downloads: fetch the weights once where there is network "
            "(open_clip.create_model_and_transforms(..., pretrained=TAG) caches the file) and set "
            f"{key}.checkpoint to that local file"
        )
    require(False, f"{key}.checkpoint", f"no such file: {path}")
