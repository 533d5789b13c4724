"""The translation predictor: images and source sentences in, target tokens out, through the
``encoder`` and ``decoder`` graphs (:mod:`amad.tasks.translation.graphs`) and amad's decode loop
(:mod:`amad.generation.search`).

Torch-free: the graphs may be torch modules, ONNX Runtime sessions or served models. What decoding
needs (start, end and padding ids, the longest translation, whether the model reads the image) is in
the encoder graph's ``metadata``.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from amad.contracts.graph import Graph, Predictor
from amad.errors import AmadError
from amad.generation.config import GenerationConfig, fixed_length, greedy
from amad.generation.decoder_state import EncodedDecoderState, generation_stats
from amad.generation.search import Generation, SpecialTokens, generate

CACHE_NAMES = ("self_keys", "self_values")
TEXT_CROSS_NAMES = ("text_cross_keys", "text_cross_values")
IMAGE_CROSS_NAMES = ("image_cross_keys", "image_cross_values")
SOURCE_MASK = "source_real"
DECODING_METADATA = "amad.decoding"  # {"start", "end", "pad", "max_length", "image"}


def memory_axes(image: bool) -> dict[str, int]:
    """The decoder's memory inputs in order, with their batch axes (keys / values ``[L, B, H, n, d]``,
    the source mask ``[B, S]``)."""
    names = {**dict.fromkeys(TEXT_CROSS_NAMES, 1), SOURCE_MASK: 0}
    return {**names, **dict.fromkeys(IMAGE_CROSS_NAMES, 1)} if image else names


def decoding_metadata(special: SpecialTokens, max_length: int, image: bool) -> dict[str, str]:
    """The encoder graph's metadata entry that :class:`TranslationPredictor` decodes by."""
    values = {"start": special.start, "end": special.end, "pad": special.pad, "max_length": max_length, "image": image}
    return {DECODING_METADATA: json.dumps(values)}


class TranslationPredictor(Predictor):
    """``{"pixels", "source"} -> {"tokens" [B, max_length]}``: each sentence's translation ids (no start
    or end token), right-padded with the padding id.

    Args:
        graphs: the ``encoder`` and ``decoder`` graphs.
        generation: greedy or beam settings; None: greedy up to the model's longest translation.
        cached: step with the key/value cache (the default), or recompute the prefix every step.
    """

    def __init__(
        self, graphs: dict[str, Graph], generation: GenerationConfig | None = None, cached: bool = True
    ) -> None:
        super().__init__(graphs)
        metadata = getattr(graphs["encoder"], "metadata", {}) or {}
        if DECODING_METADATA not in metadata:
            raise AmadError(f"the encoder graph has no {DECODING_METADATA} metadata: re-export the model (amad export)")
        decoding = json.loads(metadata[DECODING_METADATA])
        self.special = SpecialTokens(decoding["start"], decoding["end"], decoding["pad"])
        self.max_length = int(decoding["max_length"])
        self.image = bool(decoding["image"])
        self.generation = generation or greedy(self.max_length)
        if self.generation.max_length > self.max_length:
            raise AmadError(
                f"evaluate.generation.max_length: {self.generation.max_length} tokens is longer than the model's "
                f"sentences ({self.max_length}: data.context_length - 1); lower it"
            )
        self.cached = cached
        self.last: Generation | None = None

    def with_settings(
        self, generation: GenerationConfig | None = None, cached: bool | None = None
    ) -> TranslationPredictor:
        """This predictor with other decoding settings (None: keep)."""
        return TranslationPredictor(
            self.graphs, generation or self.generation, self.cached if cached is None else cached
        )

    def encoder_inputs(self, pixels: Any, source: Any) -> tuple:
        """The encoder graph's inputs (a text-only model reads the source alone)."""
        return (pixels, source) if self.image else (source,)

    def generate(self, pixels: Any, source: Any, keep_logits: bool = False) -> tuple[Generation, EncodedDecoderState]:
        """The decode run of a batch, and the state it ended in."""
        numpy = isinstance(source, np.ndarray)
        names = memory_axes(self.image)
        state = EncodedDecoderState(
            self.graphs["decoder"],
            self.graphs["encoder"](*self.encoder_inputs(pixels, source)),
            names,
            CACHE_NAMES,
            tuple(name for name in names if name != SOURCE_MASK),
            numpy=numpy,
            device=None if numpy else source.device,
            cached=self.cached,
        )
        return generate(state, len(source), self.generation, self.special, keep_logits), state

    def __call__(self, batch: dict) -> dict[str, Any]:
        source = batch["source"]
        generation, _ = self.generate(batch["pixels"], source)
        self.last = generation
        tokens = generation.padded(self.generation.max_length, self.special.pad)
        if isinstance(source, np.ndarray):
            return {"tokens": tokens}
        import torch

        return {"tokens": torch.from_numpy(tokens)}


def timed_translation(graphs: dict[str, Graph], cached: bool) -> Any:
    """The benchmark's call: greedy translations of a batch, each the model's longest translation long
    (the end token held back to the last step, so every model does the same work) -> tokens generated
    (end tokens included), decoder steps, and the cache bytes read from the tensors the run ended with."""
    predictor = TranslationPredictor(graphs, fixed_length(TranslationPredictor(graphs).max_length), cached=cached)

    def run(*inputs: Any) -> dict[str, float]:  # the encoder graph's inputs: (pixels, source), or (source,)
        pixels, source = inputs if predictor.image else (None, inputs[0])
        generation, state = predictor.generate(pixels, source)
        return generation_stats(generation, state, predictor.generation.max_length)

    return run
