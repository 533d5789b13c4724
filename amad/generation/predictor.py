"""The base of the generative tasks' predictors: what decoding needs, read from the encoder graph's
metadata (``amad.decoding``: start, end and padding ids, the longest output, and task-specific
entries), the generation settings and whether the key/value cache is used. Torch-free."""

from __future__ import annotations

import json
from typing import Any, ClassVar

from amad.contracts.graph import Graph, Predictor
from amad.errors import AmadError
from amad.generation.config import GenerationConfig, greedy
from amad.generation.search import Generation, SpecialTokens

DECODING_METADATA = "amad.decoding"


def decoding_metadata(special: SpecialTokens, max_length: int, **extra: Any) -> dict[str, str]:
    """The encoder graph's metadata entry that a :class:`DecodingPredictor` decodes by."""
    values = {"start": special.start, "end": special.end, "pad": special.pad, "max_length": max_length, **extra}
    return {DECODING_METADATA: json.dumps(values)}


class DecodingPredictor(Predictor):
    """A predictor that runs amad's decode loop over an encoder graph and a decoder graph.

    Class attributes:
        encoder_graph: the graph whose metadata holds ``amad.decoding`` (captioning: ``image``).
        outputs: what the model writes, for messages (``captions``).

    Args:
        graphs: the model's graphs.
        generation: greedy or beam settings; None: greedy up to the model's longest output.
        cached: step with the key/value cache (the default), or recompute the prefix every step.
    """

    encoder_graph: ClassVar[str]
    outputs: ClassVar[str]

    def __init__(
        self, graphs: dict[str, Graph], generation: GenerationConfig | None = None, cached: bool = True
    ) -> None:
        super().__init__(graphs)
        metadata = getattr(graphs[self.encoder_graph], "metadata", {}) or {}
        if DECODING_METADATA not in metadata:
            raise AmadError(
                f"the {self.encoder_graph} graph has no {DECODING_METADATA} metadata: re-export the model (amad export)"
            )
        self.decoding = json.loads(metadata[DECODING_METADATA])
        self.special = SpecialTokens(self.decoding["start"], self.decoding["end"], self.decoding["pad"])
        self.max_length = int(self.decoding["max_length"])
        self.generation = generation or greedy(self.max_length)
        if self.generation.max_length > self.max_length:
            raise AmadError(
                f"evaluate.generation.max_length: {self.generation.max_length} tokens is longer than the model's "
                f"{self.outputs} ({self.max_length}: data.context_length - 1); lower it"
            )
        self.cached = cached
        self.last: Generation | None = None  # the last batch's generation (steps, scores, logits)

    def with_settings(self, generation: GenerationConfig | None = None, cached: bool | None = None) -> Any:
        """This predictor with other decoding settings (None: keep)."""
        return type(self)(self.graphs, generation or self.generation, self.cached if cached is None else cached)

    def tokens_like(self, generation: Generation, like: Any) -> dict[str, Any]:
        """``{"tokens" [B, max_length]}``: the ids of ``generation`` right-padded, as numpy or torch like ``like``."""
        import numpy as np

        self.last = generation
        tokens = generation.padded(self.generation.max_length, self.special.pad)
        if isinstance(like, np.ndarray):
            return {"tokens": tokens}
        import torch

        return {"tokens": torch.from_numpy(tokens)}
