"""The captioning predictor: images in, caption tokens out, through the ``image`` and ``decoder`` graphs
(:mod:`amad.tasks.captioning.decoder`) and amad's decode loop (:mod:`amad.generation.search`).

Torch-free: the graphs may be torch modules (torch tensors flow through, on their device), ONNX
Runtime sessions or served models (numpy arrays flow through). What decoding needs of the
vocabulary (start, end and padding ids, the longest caption) is in the image graph's ``metadata``:
the torch graph's attribute, the export's ONNX metadata, a served model's ``amad.*`` parameters.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from amad.contracts.graph import Graph, Predictor
from amad.generation.config import fixed_length
from amad.generation.decoder_state import EncodedDecoderState, generation_stats
from amad.generation.predictor import DecodingPredictor
from amad.generation.search import Generation, generate

CACHE_NAMES = ("text_keys", "text_values", "self_keys", "self_values")
CROSS_NAMES = ("cross_keys", "cross_values")
SERVED_GRAPH = "caption"  # a served captioner's graph name (its amad.graph): amad.tasks.captioning.serving


class CaptionDecoderState(EncodedDecoderState):
    """A batch of images encoded by the ``image`` graph, stepped through the ``decoder`` graph
    (``cached``: with the key/value cache; otherwise recomputing the prefix every step)."""

    def __init__(self, graphs: dict[str, Graph], pixels: Any, cached: bool = True) -> None:
        numpy = isinstance(pixels, np.ndarray)
        super().__init__(
            graphs["decoder"],
            graphs["image"](pixels),
            dict.fromkeys(CROSS_NAMES, 1),
            CACHE_NAMES,
            CROSS_NAMES,
            numpy=numpy,
            device=None if numpy else pixels.device,
            cached=cached,
        )


class CaptionPredictor(DecodingPredictor):
    """``{"pixels"} -> {"tokens" [B, max_length]}``: each image's caption ids (no start or end token),
    right-padded with the padding id, over the ``image`` and ``decoder`` graphs (see
    :class:`~amad.generation.predictor.DecodingPredictor` for the arguments)."""

    encoder_graph = "image"
    outputs = "captions"

    def generate(self, pixels: Any, keep_logits: bool = False) -> tuple[Generation, CaptionDecoderState]:
        """The decode run of a batch of images, and the state it ended in."""
        state = CaptionDecoderState(self.graphs, pixels, self.cached)
        generation = generate(state, len(pixels), self.generation, self.special, keep_logits)
        return generation, state

    def __call__(self, batch: dict) -> dict[str, Any]:
        pixels = batch["pixels"]
        return self.tokens_like(self.generate(pixels)[0], pixels)


def timed_caption(graphs: dict[str, Graph], cached: bool) -> Any:
    """The benchmark's call (:meth:`CaptioningTask.generation_calls
    <amad.tasks.captioning.task.CaptioningTask.generation_calls>`): greedy captions of a batch of
    pixels, each the model's longest caption long (the end token is held back to the last step, so
    every model does the same work whatever it would write for these images) -> tokens generated
    (end tokens included), decoder steps, and the self-attention cache bytes per generated token and
    cross-attention bytes per caption, read from the tensors the run ended with."""
    predictor = CaptionPredictor(graphs, fixed_length(CaptionPredictor(graphs).max_length), cached=cached)

    def run(pixels: Any) -> dict[str, float]:
        generation, state = predictor.generate(pixels)
        return generation_stats(generation, state, predictor.generation.max_length)

    return run


class ServedCaptionPredictor(Predictor):
    """``{"pixels"} -> {"tokens"}`` over a served :class:`~amad.tasks.captioning.serving.Captioner`
    (graphs ``{"caption": ...}``): one call per batch, the loop and its settings in the server."""

    def __call__(self, batch: dict) -> dict[str, Any]:
        return {"tokens": self.graphs[SERVED_GRAPH](batch["pixels"])["tokens"]}
