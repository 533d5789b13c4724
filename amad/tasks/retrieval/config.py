"""The retrieval task's ``params.yaml`` sections: ``data`` and the model configs (``teacher``, ``students.*``).

No defaults here: ``params.yaml`` holds every value (see docs/configuration.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from amad.config.typed import require
from amad.data.captions.config import CaptionDataConfig
from amad.tasks.checks import check_heads

ATTENTION_GROUPS = ("vision_self", "text_self")


def _check_tower(config, key: str) -> None:
    check_heads(config.width, config.heads, key)
    require(config.depth >= 1, f"{key}.depth", f"must be >= 1, got {config.depth}")
    require(config.mlp_ratio > 0, f"{key}.mlp_ratio", f"must be > 0, got {config.mlp_ratio}")


@dataclass(frozen=True)
class VisionConfig:
    """open_clip ``VisionTransformer`` (class token, final projection to ``embed_dim``)."""

    image_size: int
    patch_size: int
    width: int
    depth: int
    heads: int
    mlp_ratio: float

    def validate(self, key: str) -> None:
        _check_tower(self, key)
        require(
            self.patch_size >= 1 and self.image_size >= 1 and self.image_size % self.patch_size == 0,
            f"{key}.patch_size",
            f"{self.patch_size} does not divide {key}.image_size {self.image_size}",
        )


@dataclass(frozen=True)
class TextConfig:
    """open_clip ``TextTransformer`` (causal, end-of-text pooling, open_clip's tokenizer), or a
    Hugging Face BERT-style encoder from a local folder (its tokenizer, mean pooling over real
    tokens, a linear projection), at this shape."""

    context_length: int
    width: int
    depth: int
    heads: int
    mlp_ratio: float
    hf_model: str | None  # a local Hugging Face folder (config.json, tokenizer, weights), or null
    hf_pretrained: bool  # load the folder's weights (width, depth and mlp_ratio must be the folder's)

    def validate(self, key: str) -> None:
        require(not self.hf_pretrained or self.hf_model is not None, f"{key}.hf_pretrained", f"needs {key}.hf_model")
        _check_tower(self, key)
        require(self.context_length >= 4, f"{key}.context_length", f"must be >= 4, got {self.context_length}")


@dataclass(frozen=True)
class FrozenConfig:
    """Towers whose weights stay fixed while this model trains (the projections always train)."""

    vision: bool
    text: bool


@dataclass(frozen=True)
class ModelConfig:
    """A CLIP: vision and text towers, projections to ``embed_dim`` and a learned logit scale.

    ``architecture`` names an open_clip model config (``ViT-B-32``, ...) whose non-shape settings
    (activation, pooling, image mean / std) the model takes; the shapes are always the ones given
    here (null: open_clip's defaults at these shapes). ``checkpoint`` is a local open_clip checkpoint
    file of this shape and architecture (never a download; the head counts may differ from the
    checkpoint's). ``pretrained`` is an amad model folder or checkpoint whose matching tensors
    initialise the model.
    """

    architecture: str | None
    checkpoint: str | None
    embed_dim: int
    vision: VisionConfig
    text: TextConfig
    frozen: FrozenConfig
    pretrained: str | None

    def validate(self, key: str) -> None:
        require(self.embed_dim >= 1, f"{key}.embed_dim", f"must be >= 1, got {self.embed_dim}")
        require(
            self.checkpoint is None or self.architecture is not None,
            f"{key}.checkpoint",
            f"needs {key}.architecture: the open_clip config the checkpoint was trained with (its activation and "
            "image preprocessing; e.g. ViT-B-32, or ViT-B-32-quickgelu for OpenAI's weights)",
        )
        if self.architecture is not None:
            import open_clip  # only when a name is given: validating it needs open_clip's registry

            require(
                self.architecture in open_clip.list_models(),
                f"{key}.architecture",
                f"{self.architecture!r} is not an open_clip model config (open_clip.list_models())",
            )


DataConfig = CaptionDataConfig  # the shared image-caption data section


@dataclass(frozen=True)
class ZeroShotConfig:
    """Zero-shot classification of the test images whose data names classes (``data.csv.class_column``,
    or the built-in scenes' object counts): each class is the mean of its prompts' text embeddings."""

    templates: tuple[str, ...]  # prompts with one "{}" for the class name, e.g. "a photo of a {}."

    def validate(self, key: str) -> None:
        require(len(self.templates) > 0, f"{key}.templates", 'list at least one prompt, e.g. "a photo of a {}."')
        for index, template in enumerate(self.templates):
            require(
                template.count("{}") == 1,
                f"{key}.templates[{index}]",
                f'needs exactly one "{{}}" where the class name goes, got {template!r}',
            )


@dataclass(frozen=True)
class EvaluateConfig:
    """``evaluate``: what the test split is scored on beyond recall."""

    zero_shot: ZeroShotConfig
