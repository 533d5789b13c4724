"""The translation task's ``params.yaml`` sections: ``data`` (Multi30K's own layout, a JSONL manifest or
the built-in bilingual scenes; the language pair; the subword vocabulary and the context), the model
configs (``teacher``, ``students.*``) and ``evaluate``.

No defaults here: ``params.yaml`` holds every value (see docs/configuration.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from amad.config.typed import require, require_choice
from amad.data.shapes_config import ShapesConfig
from amad.generation.config import GenerationConfig
from amad.tasks.checks import check_tower

ATTENTION_GROUPS = ("vision_self", "source_self", "decoder_self", "decoder_cross_text", "decoder_cross_image")
IMAGE_GROUPS = ("vision_self", "decoder_cross_image")  # what a text-only model does not have
DATA_SOURCES = ("shapes", "multi30k", "jsonl")
SPLITS = ("train", "val", "test")
SCENE_LANGUAGES = ("en", "de")  # the built-in scenes' sentences


@dataclass(frozen=True)
class SplitNamesConfig:
    """The source's name of each amad split: Multi30K's (``task1/raw/<name>.<lang>``, ``task1/image_splits/<name>.txt``;
    e.g. ``train``, ``val``, ``test_2016_flickr``), a manifest's file (``<name>.jsonl``, relative to ``data.path``)."""

    train: str
    val: str
    test: str


@dataclass(frozen=True)
class LanguagesConfig:
    """The language pair: ISO codes as the file suffixes name them (``en`` -> ``de``, ``fr``, ``cs``)."""

    source: str
    target: str

    def validate(self, key: str) -> None:
        for side in ("source", "target"):
            code = getattr(self, side)
            require(
                isinstance(code, str) and code.isalpha() and 2 <= len(code) <= 3,
                f"{key}.{side}",
                f"expected a language code such as en or de, got {code!r}",
            )
        require(self.source != self.target, f"{key}.target", f"must differ from {key}.source ({self.source})")


@dataclass(frozen=True)
class SceneSentencesConfig(ShapesConfig):
    """The built-in scenes, each with an English description and its German translation.
    ``hypernym``: the share of object mentions whose English noun is the image-ambiguous "shape" (the
    German noun, and with it the article's and adjectives' gender, is then told by the image alone)."""

    hypernym: float

    def validate(self, key: str) -> None:
        super().validate(key)
        require(0 <= self.hypernym <= 1, f"{key}.hypernym", f"must be a fraction in 0..1, got {self.hypernym}")


@dataclass(frozen=True)
class SubwordConfig:
    """The subword vocabulary learned at ``prepare`` from the training sentences of both languages (one
    joint byte-level BPE, Hugging Face ``tokenizers``), saved with every model and its export."""

    size: int  # at most this many tokens (the 256 bytes and 3 special tokens included)
    min_frequency: int  # a merge is kept if seen at least this often
    lowercase: bool  # lower-case every sentence first (then cased BLEU equals lowercased BLEU)

    def validate(self, key: str) -> None:
        require(
            self.size >= 300, f"{key}.size", f"must be >= 300 (256 bytes, 3 special tokens, merges), got {self.size}"
        )
        require(self.min_frequency >= 1, f"{key}.min_frequency", f"must be >= 1, got {self.min_frequency}")


@dataclass(frozen=True)
class DataConfig:
    """Where the sentence pairs and their images come from, and how sentences become tokens.

    ``context_length``: every model's sentence length in tokens, start and end included (source and
    target alike; longer sentences are cut); ``prepare`` counts the sentences longer than it per split
    and side and refuses where more than ``max_truncated`` (a fraction) of a split's are.
    """

    source: str
    path: str
    images: str  # multi30k / jsonl: the image folder, relative to path
    splits: SplitNamesConfig
    languages: LanguagesConfig
    shapes: SceneSentencesConfig
    vocabulary: SubwordConfig
    context_length: int
    max_truncated: float

    def validate(self, key: str) -> None:
        require_choice(self.source, DATA_SOURCES, f"{key}.source")
        require(self.context_length >= 4, f"{key}.context_length", f"must be >= 4, got {self.context_length}")
        require(
            0 <= self.max_truncated <= 1,
            f"{key}.max_truncated",
            f"must be a fraction in 0..1, got {self.max_truncated}",
        )
        if self.source == "shapes":
            pair = (self.languages.source, self.languages.target)
            require(
                pair == SCENE_LANGUAGES,
                f"{key}.languages",
                f"the built-in scenes are English -> German (en -> de), got {pair[0]} -> {pair[1]}",
            )
            return
        require(Path(self.path).is_dir(), f"{key}.path", f"no such folder: {self.path}")
        root = Path(self.path)
        require((root / self.images).is_dir(), f"{key}.images", f"no such folder: {root / self.images}")
        names = [getattr(self.splits, split) for split in SPLITS]
        require(len(set(names)) == len(names), f"{key}.splits", f"the three splits must differ, got {names}")


@dataclass(frozen=True)
class VisionConfig:
    """open_clip ``VisionTransformer`` with CoCa's attentional pooler: ``pooler_queries`` learned
    queries attend over the patches; the last ``pooler_queries - 1`` are the image tokens the decoder's
    image cross-attention reads (they, not the patch count, set its key/value cache). Its input is the
    model's ``image_size``."""

    patch_size: int
    width: int
    depth: int
    heads: int
    mlp_ratio: float
    pooler_queries: int
    pooler_heads: int

    def validate(self, key: str) -> None:
        check_tower(self, key, self.width, f"{key}.width")
        require(self.patch_size >= 1, f"{key}.patch_size", f"must be >= 1, got {self.patch_size}")
        require(self.pooler_queries >= 2, f"{key}.pooler_queries", f"must be >= 2, got {self.pooler_queries}")
        require(self.pooler_heads >= 1, f"{key}.pooler_heads", f"must be >= 1, got {self.pooler_heads}")


@dataclass(frozen=True)
class TowerConfig:
    """A transformer stack at the model's width (``embed_dim``)."""

    depth: int
    heads: int
    mlp_ratio: float


@dataclass(frozen=True)
class SourceConfig:
    """The source-text encoder: open_clip's text transformer without the causal mask (its tokens are
    the joint vocabulary's), or a Hugging Face BERT-style encoder from a local folder (``hf_model``:
    its WordPiece tokenizer reads the source side; ``hf_pretrained``: its weights, e.g. the pretrained
    MiniLM as the teacher's English encoder). ``width``: the encoder's; its tokens are projected to
    the model's ``embed_dim`` where they differ."""

    depth: int
    heads: int
    mlp_ratio: float
    width: int
    hf_model: str | None
    hf_pretrained: bool

    def validate(self, key: str) -> None:
        check_tower(self, key, self.width, f"{key}.width")
        require(not self.hf_pretrained or self.hf_model is not None, f"{key}.hf_pretrained", f"needs {key}.hf_model")


@dataclass(frozen=True)
class ModelConfig:
    """A multimodal translation model (:class:`~amad.tasks.translation.model.TranslationModel`): a
    source-text encoder (:class:`SourceConfig`), a vision encoder
    (open_clip ViT with an attentional pooler; ``vision: null`` for a text-only model) and a decoder
    whose every layer has causal self-attention, cross-attention over the source tokens, then
    cross-attention over the image tokens. ``embed_dim`` is the width of the decoder, of the image
    tokens and of the source tokens it reads. ``pretrained``: an amad model folder or checkpoint whose matching tensors
    initialise the model."""

    embed_dim: int
    context_length: int  # the sentences' tokens (data.context_length, here too: a config alone says its shape)
    image_size: int  # the side images are resized to (a text-only model receives them too, and reads none)
    vision: VisionConfig | None
    source: SourceConfig
    decoder: TowerConfig
    pretrained: str | None

    def validate(self, key: str) -> None:
        require(self.embed_dim >= 1, f"{key}.embed_dim", f"must be >= 1, got {self.embed_dim}")
        require(self.context_length >= 4, f"{key}.context_length", f"must be >= 4, got {self.context_length}")
        check_tower(self.decoder, f"{key}.decoder", self.embed_dim, f"{key}.embed_dim")
        require(self.image_size >= 1, f"{key}.image_size", f"must be >= 1, got {self.image_size}")
        if self.vision is not None:
            require(
                self.image_size % self.vision.patch_size == 0,
                f"{key}.vision.patch_size",
                f"{self.vision.patch_size} does not divide {key}.image_size {self.image_size}",
            )
            require(
                self.embed_dim % self.vision.pooler_heads == 0,
                f"{key}.vision.pooler_heads",
                f"{self.vision.pooler_heads} heads do not divide {key}.embed_dim {self.embed_dim}",
            )


@dataclass(frozen=True)
class EvaluateConfig:
    """``evaluate``: how the test split is translated (validation during training decodes greedily),
    and the adversarial evaluation: the test split decoded again with its images shuffled across
    sentences (a derangement seeded by ``shuffle_seed``), reporting each model's BLEU drop."""

    generation: GenerationConfig
    shuffled_images: bool
    shuffle_seed: int
