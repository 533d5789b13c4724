"""The captioning task's ``params.yaml`` sections: ``data`` (the shared image-caption section plus the
captions' vocabulary and context), the model configs (``teacher``, ``students.*``) and ``evaluate``.

No defaults here: ``params.yaml`` holds every value (see docs/configuration.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from amad.config.typed import require, require_choice
from amad.data.captions.config import CaptionDataConfig
from amad.generation.config import GenerationConfig
from amad.tasks.checks import check_tower

ATTENTION_GROUPS = ("vision_self", "text_self", "decoder_self", "decoder_cross")
VOCABULARY_KINDS = ("learned", "open_clip")


@dataclass(frozen=True)
class VocabularyConfig:
    """The captions' tokens: ``learned`` (a byte-level BPE learned from the training captions at
    ``prepare``, saved with every model) or ``open_clip`` (open_clip's 49,408-token BPE, what the
    registry CoCa configs and their checkpoints use)."""

    kind: str
    size: int  # learned: at most this many tokens (the 256 bytes and 3 special tokens included)
    min_frequency: int  # learned: a merge is kept if seen at least this often

    def validate(self, key: str) -> None:
        require_choice(self.kind, VOCABULARY_KINDS, f"{key}.kind")
        require(
            self.size >= 300, f"{key}.size", f"must be >= 300 (256 bytes, 3 special tokens, merges), got {self.size}"
        )
        require(self.min_frequency >= 1, f"{key}.min_frequency", f"must be >= 1, got {self.min_frequency}")


@dataclass(frozen=True)
class DataConfig(CaptionDataConfig):
    """The image-caption data, and how its captions become tokens.

    ``context_length`` is every model's caption length in tokens (start and end included; longer
    captions are cut); ``prepare`` counts the captions longer than it per split and refuses where
    more than ``max_truncated`` (a fraction) of a split's captions are.
    """

    vocabulary: VocabularyConfig
    context_length: int
    max_truncated: float

    def validate(self, key: str) -> None:
        super().validate(key)
        require(self.context_length >= 4, f"{key}.context_length", f"must be >= 4, got {self.context_length}")
        require(
            0 <= self.max_truncated <= 1,
            f"{key}.max_truncated",
            f"must be a fraction in 0..1, got {self.max_truncated}",
        )


@dataclass(frozen=True)
class VisionConfig:
    """open_clip ``VisionTransformer`` with CoCa's attentional pooler: ``pooler_queries`` learned
    queries attend over the patch tokens; the first is the contrastive embedding, the other
    ``pooler_queries - 1`` are the image tokens the decoder's cross-attention reads (so they, not the
    patch count, set the cross-attention's key/value cache)."""

    image_size: int
    patch_size: int
    width: int
    depth: int
    heads: int
    mlp_ratio: float
    pooler_queries: int
    pooler_heads: int

    def validate(self, key: str) -> None:
        check_tower(self, key, self.width, f"{key}.width")
        require(
            self.patch_size >= 1 and self.image_size >= 1 and self.image_size % self.patch_size == 0,
            f"{key}.patch_size",
            f"{self.patch_size} does not divide {key}.image_size {self.image_size}",
        )
        require(self.pooler_queries >= 2, f"{key}.pooler_queries", f"must be >= 2, got {self.pooler_queries}")
        require(self.pooler_heads >= 1, f"{key}.pooler_heads", f"must be >= 1, got {self.pooler_heads}")


@dataclass(frozen=True)
class TowerConfig:
    """A transformer stack at the model's width (``embed_dim``): the unimodal causal text tower, or
    the multimodal decoder (causal self-attention, then cross-attention to the image tokens)."""

    depth: int
    heads: int
    mlp_ratio: float


@dataclass(frozen=True)
class TextConfig(TowerConfig):
    """The unimodal text tower, over captions of ``context_length`` tokens (``data.context_length``:
    the prepared captions' length; written here too, so a model config alone says its shape)."""

    context_length: int


@dataclass(frozen=True)
class LossConfig:
    """The task loss: ``caption * cross-entropy + contrastive * CoCa's contrastive loss``
    (open_clip's COCO fine-tune recipe: 1 and 0)."""

    caption: float
    contrastive: float

    def validate(self, key: str) -> None:
        for name in ("caption", "contrastive"):
            require(getattr(self, name) >= 0, f"{key}.{name}", f"must be >= 0, got {getattr(self, name)}")
        require(self.caption + self.contrastive > 0, f"{key}.caption", "the two weights cannot both be 0")


@dataclass(frozen=True)
class ModelConfig:
    """An open_clip CoCa: vision tower with attentional pooler, unimodal text tower (with CoCa's
    appended class token, for the contrastive embedding), multimodal decoder, logit scale.

    ``embed_dim`` is the width of the image tokens, the text tower and the decoder (CoCa's
    cross-attention reads image tokens at the decoder's width). ``architecture`` names an open_clip
    CoCa config (``coca_ViT-B-32``, ...) whose non-shape settings (activation, image mean / std) the
    model takes, the shapes are always the ones given here; ``checkpoint`` is a local open_clip
    checkpoint file of this shape (never a download). ``pretrained`` is an amad model folder or
    checkpoint whose matching tensors initialise the model.
    """

    architecture: str | None
    checkpoint: str | None
    embed_dim: int
    vision: VisionConfig
    text: TextConfig
    decoder: TowerConfig
    loss: LossConfig
    pretrained: str | None

    def validate(self, key: str) -> None:
        require(self.embed_dim >= 1, f"{key}.embed_dim", f"must be >= 1, got {self.embed_dim}")
        check_tower(self.text, f"{key}.text", self.embed_dim, f"{key}.embed_dim")
        check_tower(self.decoder, f"{key}.decoder", self.embed_dim, f"{key}.embed_dim")
        require(
            self.embed_dim % self.vision.pooler_heads == 0,
            f"{key}.vision.pooler_heads",
            f"{self.vision.pooler_heads} heads do not divide {key}.embed_dim {self.embed_dim}",
        )
        require(
            self.checkpoint is None or self.architecture is not None,
            f"{key}.checkpoint",
            f"needs {key}.architecture: the open_clip CoCa config the checkpoint was trained with (e.g. coca_ViT-B-32)",
        )
        if self.architecture is not None:
            import open_clip  # only when a name is given: validating it needs open_clip's registry

            require(
                self.architecture in open_clip.list_models(),
                f"{key}.architecture",
                f"{self.architecture!r} is not an open_clip model config (open_clip.list_models())",
            )
            require(
                "multimodal_cfg" in (open_clip.get_model_config(self.architecture) or {}),
                f"{key}.architecture",
                f"{self.architecture!r} is not a CoCa config (no multimodal decoder); e.g. coca_ViT-B-32",
            )


@dataclass(frozen=True)
class EvaluateConfig:
    """``evaluate``: how the test split is captioned (validation during training decodes greedily),
    and how many training captions compete for the best constant caption (0: all)."""

    generation: GenerationConfig
    constant_candidates: int

    def validate(self, key: str) -> None:
        require(
            self.constant_candidates >= 0,
            f"{key}.constant_candidates",
            f"must be >= 0 (0: every distinct training caption), got {self.constant_candidates}",
        )
