"""The VQA task's ``params.yaml`` sections: ``data`` and the model configs (``teacher``, ``students.*``).

No defaults here: ``params.yaml`` holds every value (see docs/configuration.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from amad.config.typed import require, require_choice
from amad.data.shapes_config import ShapesConfig
from amad.tasks.checks import check_heads

DATA_SOURCES = ("shapes", "jsonl", "vqav2")
ATTENTION_GROUPS = ("vision_self", "text_self", "fusion_self", "fusion_cross")


def _check_mlp_ratio(mlp_ratio: float, key: str) -> None:
    require(mlp_ratio > 0, f"{key}.mlp_ratio", f"must be > 0, got {mlp_ratio}")


@dataclass(frozen=True)
class VisionConfig:
    """Vision tower: a timm ViT of the given shape; with ``timm_name``, that timm architecture with
    the shape fields as overrides, and its weights from ``timm_weights`` (a local file) if given."""

    timm_name: str | None
    timm_weights: str | None  # a local .safetensors / .pth / .bin checkpoint of timm_name (never a hub download)
    image_size: int
    patch_size: int
    width: int
    depth: int
    heads: int
    mlp_ratio: float

    def validate(self, key: str) -> None:
        check_heads(self.width, self.heads, key)
        require(self.depth >= 1, f"{key}.depth", f"must be >= 1, got {self.depth}")
        require(self.image_size >= 1, f"{key}.image_size", f"must be >= 1, got {self.image_size}")
        require(
            self.patch_size >= 1 and self.image_size % self.patch_size == 0,
            f"{key}.patch_size",
            f"{self.patch_size} does not divide {key}.image_size {self.image_size}",
        )
        _check_mlp_ratio(self.mlp_ratio, key)
        require(self.timm_weights is None or self.timm_name, f"{key}.timm_weights", f"needs {key}.timm_name")
        if self.timm_name is not None:
            import timm  # only when a timm name is given: validating it needs timm's registry

            require(timm.is_model(self.timm_name), f"{key}.timm_name", f"{self.timm_name!r} is not a timm model")


@dataclass(frozen=True)
class TextConfig:
    """Text tower: an open_clip ``TextTransformer`` (causal) with open_clip's tokenizer, or a Hugging
    Face BERT-style encoder from a local folder (its tokenizer, its architecture with this shape)."""

    context_length: int
    width: int
    depth: int
    heads: int
    mlp_ratio: float
    hf_model: str | None  # a local Hugging Face folder (config.json, tokenizer, weights), or null
    hf_pretrained: bool  # load the folder's weights (width, depth and mlp_ratio must be the folder's)

    def validate(self, key: str) -> None:
        require(not self.hf_pretrained or self.hf_model is not None, f"{key}.hf_pretrained", f"needs {key}.hf_model")
        check_heads(self.width, self.heads, key)
        require(self.depth >= 1, f"{key}.depth", f"must be >= 1, got {self.depth}")
        require(self.context_length >= 4, f"{key}.context_length", f"must be >= 4, got {self.context_length}")
        _check_mlp_ratio(self.mlp_ratio, key)


@dataclass(frozen=True)
class FusionConfig:
    """BLIP-style fusion: text self-attention + cross-attention to image tokens, at the text width."""

    depth: int
    heads: int
    mlp_ratio: float

    def validate(self, key: str) -> None:
        require(self.depth >= 1, f"{key}.depth", f"must be >= 1, got {self.depth}")
        require(self.heads >= 1, f"{key}.heads", f"must be >= 1, got {self.heads}")
        _check_mlp_ratio(self.mlp_ratio, key)


@dataclass(frozen=True)
class ModelConfig:
    """A VQA model: vision + text + fusion towers and the answer head."""

    vision: VisionConfig
    text: TextConfig
    fusion: FusionConfig
    pretrained: str | None

    def validate(self, key: str) -> None:
        check_heads(self.text.width, self.fusion.heads, f"{key}.fusion", f"{key}.text.width")


@dataclass(frozen=True)
class DataConfig:
    """Where the VQA data comes from."""

    source: str
    path: str
    max_answers: int
    shapes: ShapesConfig

    def validate(self, key: str) -> None:
        require_choice(self.source, DATA_SOURCES, f"{key}.source")
        require(Path(self.path).is_dir(), f"{key}.path", f"no such folder: {self.path}")
        require(self.max_answers >= 2, f"{key}.max_answers", f"must be >= 2, got {self.max_answers}")


@dataclass(frozen=True)
class EvaluateConfig:
    """``evaluate``: VQA has no evaluation settings (``evaluate: {}``): accuracy and its per-family
    breakdown are always computed."""
