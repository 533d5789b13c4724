"""A captioning export served as one model, the decode loop in the server: pixels in, caption tokens
and text out.

The key/value cache has its batch on axis 1, which Triton's batching (axis 0) cannot split, and a
client stepping the decoder over HTTP would pay a round trip per token: so the server runs
:class:`Captioner`, amad's own decode loop (:class:`~amad.tasks.captioning.predictor.CaptionPredictor`)
over the export's ``image`` and ``decoder`` graphs in ONNX Runtime, on each batch Triton's dynamic
batcher forms. Imports numpy, onnxruntime and ``tokenizers`` alone: the PyTriton venv
(``amad/serving/pytriton_server.py``) loads it from the amad package next to it.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from amad.data.saved_tokenizer import SavedTokenizer
from amad.export.onnx_runtime import OnnxModel
from amad.tasks.captioning.predictor import SERVED_GRAPH, CaptionPredictor


class Captioner:
    """The served captioning model of an export folder.

    Args:
        folder: the export folder (``image.onnx``, ``decoder.onnx``).
        generation: decoding settings, some of :class:`~amad.generation.config.GenerationConfig`'s
            fields (``beams``, ``max_length``, ...) over greedy up to the model's longest caption
            (None: that; with beams, ``length_penalty`` 1 unless given).

    Attributes:
        inputs / outputs: ``(name, numpy dtype, shape without the batch axis)`` of the served tensors:
            ``pixels`` ``[3, S, S]`` float32 in; ``tokens`` ``[max_length]`` int64 (padded with the
            padding id) and ``caption`` ``[1]`` bytes (UTF-8) out.
        metadata: the ``amad.*`` metadata clients read (the image graph's, ``amad.graph`` = ``caption``).
    """

    def __init__(self, folder: str | Path, generation: dict[str, Any] | None = None, threads: int = 0) -> None:
        folder = Path(folder)
        self.graphs = {name: OnnxModel(folder / f"{name}.onnx", threads=threads) for name in ("image", "decoder")}
        metadata = self.graphs["image"].metadata
        self.predictor = CaptionPredictor(self.graphs)  # greedy up to the longest caption
        if generation:  # over greedy's settings; beams rank by mean log-probability unless told
            settings = dataclasses.replace(self.predictor.generation, **{"length_penalty": 1.0, **generation})
            settings.validate("--generation")
            self.predictor = self.predictor.with_settings(generation=settings)
        preprocess = json.loads(metadata["amad.data.preprocess"])
        self.tokenizer = SavedTokenizer(metadata["amad.tokenizer"], preprocess["context_length"])
        size = int(preprocess["image_size"])
        self.inputs = [("pixels", np.float32, (3, size, size))]
        self.outputs = [("tokens", np.int64, (self.predictor.generation.max_length,)), ("caption", np.bytes_, (1,))]
        self.metadata = {
            **{key: value for key, value in metadata.items() if key.startswith("amad.")},
            "amad.graph": SERVED_GRAPH,
        }

    def __call__(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        tokens = self.predictor({"pixels": np.ascontiguousarray(pixels, dtype=np.float32)})["tokens"]
        captions = [self.tokenizer.decode([int(i) for i in row]).encode() for row in tokens]
        return {"tokens": tokens, "caption": np.array(captions, dtype=np.bytes_).reshape(-1, 1)}
