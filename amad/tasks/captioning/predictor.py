"""The captioning predictor: images in, caption tokens out, through the ``image`` and ``decoder`` graphs
(:mod:`amad.tasks.captioning.decoder`) and amad's decode loop (:mod:`amad.generation.search`).

Torch-free: the graphs may be torch modules (torch tensors flow through, on their device), ONNX
Runtime sessions or served models (numpy arrays flow through). What decoding needs of the
vocabulary (start, end and padding ids, the longest caption) is in the image graph's ``metadata``:
the torch graph's attribute, the export's ONNX metadata, a served model's ``amad.*`` parameters.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from amad.contracts.graph import Graph, Predictor
from amad.errors import AmadError
from amad.generation.config import GenerationConfig
from amad.generation.search import Generation, SpecialTokens, generate

CACHE_NAMES = ("text_keys", "text_values", "self_keys", "self_values")
CROSS_NAMES = ("cross_keys", "cross_values")
PRESENT = "present_"
DECODING_METADATA = "amad.decoding"  # {"start", "end", "pad", "max_length"}
SERVED_GRAPH = "caption"  # a served captioner's graph name (its amad.graph): amad.tasks.captioning.serving


def decoding_metadata(start: int, end: int, pad: int, max_length: int) -> dict[str, str]:
    """The image graph's metadata entry that :class:`CaptionPredictor` decodes by."""
    return {DECODING_METADATA: json.dumps({"start": start, "end": end, "pad": pad, "max_length": max_length})}


def greedy(max_length: int) -> GenerationConfig:
    """Plain greedy decoding up to ``max_length`` tokens (validation during training, parity checks)."""
    return GenerationConfig(beams=1, max_length=max_length, min_length=0, length_penalty=0.0, no_repeat_ngram=0)


class CaptionDecoderState:
    """A batch of images encoded by the ``image`` graph, stepped through the ``decoder`` graph.

    ``cached``: each step feeds the newest token and the key/value cache (and keeps the cache the
    graph returns); otherwise each step feeds the whole prefix after the start token with the start
    token's cache, recomputing every token (the baseline the cache is measured against).
    """

    def __init__(self, graphs: dict[str, Graph], pixels: Any, cached: bool = True) -> None:
        first = graphs["image"](pixels)
        self.decoder = graphs["decoder"]
        self.cached = cached
        self.first_logits = first["logits"]
        self.cross = tuple(first[name] for name in CROSS_NAMES)
        self.start_cache = tuple(first[name] for name in CACHE_NAMES)
        self.cache = self.start_cache
        self.numpy = isinstance(pixels, np.ndarray)
        self.device = None if self.numpy else pixels.device

    def _tokens(self, tokens: np.ndarray) -> Any:
        if self.numpy:
            return np.ascontiguousarray(tokens, dtype=np.int64)
        import torch

        return torch.from_numpy(np.ascontiguousarray(tokens, dtype=np.int64)).to(self.device)

    @staticmethod
    def _logits(logits: Any) -> np.ndarray:
        return logits if isinstance(logits, np.ndarray) else logits.float().cpu().numpy()

    def step(self, prefixes: np.ndarray) -> np.ndarray:
        if prefixes.shape[1] == 1:  # the start token: the image graph's first step
            return self._logits(self.first_logits)
        if self.cached:
            outputs = self.decoder(self._tokens(prefixes[:, -1:]), *self.cross, *self.cache)
            self.cache = tuple(outputs[PRESENT + name] for name in CACHE_NAMES)
        else:
            outputs = self.decoder(self._tokens(prefixes[:, 1:]), *self.cross, *self.start_cache)
        return self._logits(outputs["logits"])

    def _take(self, value: Any, rows: np.ndarray, axis: int) -> Any:
        if self.numpy:
            return np.take(value, rows, axis=axis)
        import torch

        return value.index_select(axis, torch.as_tensor(rows, device=value.device))

    def select(self, rows: np.ndarray) -> None:
        self.first_logits = self._take(self.first_logits, rows, 0)
        self.cross = tuple(self._take(value, rows, 1) for value in self.cross)
        self.start_cache = tuple(self._take(value, rows, 1) for value in self.start_cache)
        self.cache = tuple(self._take(value, rows, 1) for value in self.cache)

    def cache_bytes(self) -> dict[str, int]:
        """Bytes per row (one caption) of the self-attention caches now held, and of the cross keys and
        values, read from the tensors themselves."""
        rows = int(self.cross[0].shape[1])
        sizes = {
            "self_attention": sum(_nbytes(value) for value in self.cache),
            "cross_attention": sum(_nbytes(value) for value in self.cross),
        }
        return {name: size // rows for name, size in sizes.items()}


def _nbytes(value: Any) -> int:
    return int(value.nbytes) if isinstance(value, np.ndarray) else value.numel() * value.element_size()


class CaptionPredictor(Predictor):
    """``{"pixels"} -> {"tokens" [B, max_length]}``: each image's caption ids (no start or end token),
    right-padded with the padding id.

    Args:
        graphs: the ``image`` and ``decoder`` graphs.
        generation: greedy or beam settings; None: greedy up to the model's longest caption.
        cached: step with the key/value cache (the default), or recompute the prefix every step.
    """

    def __init__(
        self, graphs: dict[str, Graph], generation: GenerationConfig | None = None, cached: bool = True
    ) -> None:
        super().__init__(graphs)
        metadata = getattr(graphs["image"], "metadata", {}) or {}
        if DECODING_METADATA not in metadata:
            raise AmadError(f"the image graph has no {DECODING_METADATA} metadata: re-export the model (amad export)")
        decoding = json.loads(metadata[DECODING_METADATA])
        self.special = SpecialTokens(decoding["start"], decoding["end"], decoding["pad"])
        self.max_length = int(decoding["max_length"])
        self.generation = generation or greedy(self.max_length)
        if self.generation.max_length > self.max_length:
            raise AmadError(
                f"evaluate.generation.max_length: {self.generation.max_length} tokens is longer than the model's "
                f"captions ({self.max_length}: data.context_length - 1); lower it"
            )
        self.cached = cached
        self.last: Generation | None = None  # the last batch's generation (steps, scores, logits)

    def with_settings(self, generation: GenerationConfig | None = None, cached: bool | None = None) -> CaptionPredictor:
        """This predictor with other decoding settings (None: keep)."""
        return CaptionPredictor(self.graphs, generation or self.generation, self.cached if cached is None else cached)

    def generate(self, pixels: Any, keep_logits: bool = False) -> tuple[Generation, CaptionDecoderState]:
        """The decode run of a batch of images, and the state it ended in."""
        state = CaptionDecoderState(self.graphs, pixels, self.cached)
        generation = generate(state, len(pixels), self.generation, self.special, keep_logits)
        return generation, state

    def __call__(self, batch: dict) -> dict[str, Any]:
        pixels = batch["pixels"]
        generation, _ = self.generate(pixels)
        self.last = generation
        tokens = np.full((len(pixels), self.generation.max_length), self.special.pad, dtype=np.int64)
        for row, ids in enumerate(generation.tokens):
            tokens[row, : len(ids)] = ids
        if self.numpy_batch(pixels):
            return {"tokens": tokens}
        import torch

        return {"tokens": torch.from_numpy(tokens)}

    @staticmethod
    def numpy_batch(pixels: Any) -> bool:
        return isinstance(pixels, np.ndarray)


def timed_caption(graphs: dict[str, Graph], cached: bool) -> Any:
    """The benchmark's call (:meth:`CaptioningTask.generation_calls
    <amad.tasks.captioning.task.CaptioningTask.generation_calls>`): greedy captions of a batch of
    pixels, each the model's longest caption long (the end token is held back to the last step, so
    every model does the same work whatever it would write for these images) -> tokens generated
    (end tokens included), decoder steps, and the self-attention cache bytes per generated token and
    cross-attention bytes per caption, read from the tensors the run ended with."""
    longest = CaptionPredictor(graphs).max_length
    fixed = GenerationConfig(beams=1, max_length=longest, min_length=longest - 1, length_penalty=0.0, no_repeat_ngram=0)
    predictor = CaptionPredictor(graphs, fixed, cached=cached)

    def run(pixels: Any) -> dict[str, float]:
        generation, state = predictor.generate(pixels)
        limit = predictor.generation.max_length
        tokens = sum(len(ids) + (len(ids) < limit) for ids in generation.tokens)
        sizes = state.cache_bytes()
        held = int(state.cache[0].shape[3])  # positions the cache holds: start token + fed tokens
        return {
            "tokens": tokens,
            "steps": generation.steps,
            "self_attention_cache_bytes_per_token": sizes["self_attention"] / held,
            "cross_attention_cache_bytes": sizes["cross_attention"],
        }

    return run


class ServedCaptionPredictor(Predictor):
    """``{"pixels"} -> {"tokens"}`` over a served :class:`~amad.tasks.captioning.serving.Captioner`
    (graphs ``{"caption": ...}``): one call per batch, the loop and its settings in the server."""

    def __call__(self, batch: dict) -> dict[str, Any]:
        return {"tokens": self.graphs[SERVED_GRAPH](batch["pixels"])["tokens"]}
