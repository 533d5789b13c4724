"""A translation export served as one model, the decode loop in the server (see
:mod:`amad.generation.serving`): pixels and source token ids in, translation tokens and text out."""

from __future__ import annotations

from typing import Any

import numpy as np

from amad.generation.serving import ServedDecodeLoop
from amad.tasks.translation.predictor import SERVED_GRAPH, TranslationPredictor


class Translator(ServedDecodeLoop):
    """The served translation model of an export folder (``encoder.onnx``, ``decoder.onnx``):
    ``pixels`` ``[3, S, S]`` float32 (not for a text-only model) and ``source`` ``[context_length]``
    int64 (the source sentence's ids as the export's tokenizer writes them: start, sentence, end,
    padding) in; ``tokens`` and ``translation`` out (see
    :class:`~amad.generation.serving.ServedDecodeLoop`)."""

    predictor_class = TranslationPredictor
    served_graph = SERVED_GRAPH
    text_output = "translation"

    def served_inputs(self) -> list[tuple[str, Any, tuple[int, ...]]]:
        size, context = int(self.preprocess["image_size"]), int(self.preprocess["context_length"])
        source = ("source", np.int64, (context,))
        return [("pixels", np.float32, (3, size, size)), source] if self.predictor.image else [source]
