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
from amad.generation.config import GenerationConfig, fixed_length
from amad.generation.decoder_state import EncodedDecoderState, generation_stats
from amad.generation.predictor import DECODING_METADATA, DecodingPredictor
from amad.generation.search import Generation, generate

CACHE_NAMES = ("self_keys", "self_values")
TEXT_CROSS_NAMES = ("text_cross_keys", "text_cross_values")
IMAGE_CROSS_NAMES = ("image_cross_keys", "image_cross_values")
SOURCE_MASK = "source_real"
SERVED_GRAPH = "translation"  # a served translator's graph name (its amad.graph): amad.tasks.translation.serving


def memory_axes(image: bool) -> dict[str, int]:
    """The decoder's memory inputs in order, with their batch axes (keys / values ``[L, B, H, n, d]``,
    the source mask ``[B, S]``)."""
    names = {**dict.fromkeys(TEXT_CROSS_NAMES, 1), SOURCE_MASK: 0}
    return {**names, **dict.fromkeys(IMAGE_CROSS_NAMES, 1)} if image else names


class TranslationPredictor(DecodingPredictor):
    """``{"pixels", "source"} -> {"tokens" [B, max_length]}``: each sentence's translation ids (no start
    or end token), right-padded with the padding id, over the ``encoder`` and ``decoder`` graphs (see
    :class:`~amad.generation.predictor.DecodingPredictor` for the arguments). ``image``: the model
    reads the image (a text-only model's encoder takes the source alone)."""

    encoder_graph = "encoder"
    outputs = "sentences"

    def __init__(
        self, graphs: dict[str, Graph], generation: GenerationConfig | None = None, cached: bool = True
    ) -> None:
        super().__init__(graphs, generation, cached)
        self.image = bool(self.decoding["image"])

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
        source = batch["source"]  # a text-only model's batch may have no pixels
        return self.tokens_like(self.generate(batch.get("pixels"), source)[0], source)


class ServedTranslationPredictor(Predictor):
    """``{"pixels", "source"} -> {"tokens"}`` over a served :class:`~amad.tasks.translation.serving.Translator`
    (graphs ``{"translation": ...}``): one call per batch, the loop and its settings in the server.
    Whether the model reads the image is in the served model's ``amad.decoding`` metadata."""

    def __init__(self, graphs: dict[str, Graph]) -> None:
        super().__init__(graphs)
        metadata = getattr(graphs[SERVED_GRAPH], "metadata", {}) or {}
        if DECODING_METADATA not in metadata:
            raise AmadError(f"the served {SERVED_GRAPH} model publishes no {DECODING_METADATA} metadata")
        self.image = bool(json.loads(metadata[DECODING_METADATA])["image"])

    def __call__(self, batch: dict) -> dict[str, Any]:
        inputs = (batch["pixels"], batch["source"]) if self.image else (batch["source"],)
        return {"tokens": self.graphs[SERVED_GRAPH](*inputs)["tokens"]}


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
