"""A translation model's preprocessing: the image, the target side's tokenizer (the joint vocabulary
learned at ``prepare``) and, where the source encoder is a Hugging Face tower, the source side's own
tokenizer (its WordPiece); otherwise the source side reads the joint vocabulary too."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from amad.data.preprocess import HF_PREFIX, Preprocess

SOURCE_TOKENIZER_METADATA = "amad.source_tokenizer"  # the source side's saved tokenizer in an export


@dataclass(frozen=True)
class TranslationPreprocess(Preprocess):
    """:class:`~amad.data.preprocess.Preprocess` (its tokenizer: the target side's) with
    ``source_tokenizer``: ``"hf:<folder>"`` for a Hugging Face source encoder, or None (the source
    side uses the target side's tokenizer). :attr:`source` tokenises source sentences."""

    source_tokenizer: str | None = None
    # the source side's preprocessing (self where the sides share the tokenizer); not saved
    source: Any = field(default=None, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.source_tokenizer is not None and not self.source_tokenizer.startswith(HF_PREFIX):
            raise ValueError(f"source_tokenizer: expected {HF_PREFIX}<folder> or None, got {self.source_tokenizer!r}")
        side = self
        if self.source_tokenizer is not None:
            side = Preprocess(
                image_size=self.image_size,
                context_length=self.context_length,
                mean=self.mean,
                std=self.std,
                tokenizer=self.source_tokenizer,
                resize_mode=self.resize_mode,
            )
        object.__setattr__(self, "source", side)

    def to_dict(self) -> dict:
        values = super().to_dict()
        if self.source_tokenizer is None:  # the key is left out, as before it existed
            del values["source_tokenizer"]
        return values

    def export_metadata(self) -> dict[str, str]:
        """:meth:`Preprocess.export_metadata` and, with a source tokenizer of its own, ``amad.source_tokenizer``."""
        from amad.data.saved_tokenizer import tokenizer_payload

        metadata = super().export_metadata()
        if self.source is not self:
            metadata[SOURCE_TOKENIZER_METADATA] = tokenizer_payload(self.source)
        return metadata

    def with_saved_source_tokenizer(self, payload: str) -> TranslationPreprocess:
        """This preprocessing with the source tokenizer an export saved (no Hugging Face folder needed)."""
        copy = dataclasses.replace(self)
        object.__setattr__(copy, "source", self.source.with_saved_tokenizer(payload))
        return copy


def preprocess_from_metadata(metadata: dict[str, str]) -> TranslationPreprocess:
    """An export's preprocessing: ``amad.data.preprocess``, with the source side's saved tokenizer."""
    preprocess = TranslationPreprocess.from_dict(json.loads(metadata["amad.data.preprocess"]))
    if SOURCE_TOKENIZER_METADATA in metadata:
        preprocess = preprocess.with_saved_source_tokenizer(metadata[SOURCE_TOKENIZER_METADATA])
    return preprocess
