"""A captioning export served as one model, the decode loop in the server (see
:mod:`amad.generation.serving`): pixels in, caption tokens and text out."""

from __future__ import annotations

from typing import Any

import numpy as np

from amad.generation.serving import ServedDecodeLoop
from amad.tasks.captioning.predictor import SERVED_GRAPH, CaptionPredictor


class Captioner(ServedDecodeLoop):
    """The served captioning model of an export folder (``image.onnx``, ``decoder.onnx``): ``pixels``
    ``[3, S, S]`` float32 in; ``tokens`` and ``caption`` out (see
    :class:`~amad.generation.serving.ServedDecodeLoop`)."""

    predictor_class = CaptionPredictor
    served_graph = SERVED_GRAPH
    text_output = "caption"

    def served_inputs(self) -> list[tuple[str, Any, tuple[int, ...]]]:
        size = int(self.preprocess["image_size"])
        return [("pixels", np.float32, (3, size, size))]
