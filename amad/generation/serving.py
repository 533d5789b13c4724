"""A generative export served as one model, its decode loop in the server (the base of the tasks'
``serving_loop`` classes: :class:`~amad.tasks.captioning.serving.Captioner`,
:class:`~amad.tasks.translation.serving.Translator`).

The key/value cache has its batch on axis 1, which Triton's batching (axis 0) cannot split, and a
client stepping the decoder over HTTP would pay a round trip per token: so the server runs amad's
own decode loop (the task's :class:`~amad.generation.predictor.DecodingPredictor`) over the
export's encoder and ``decoder`` graphs in ONNX Runtime, on each batch Triton's dynamic batcher
forms. Imports numpy, onnxruntime and ``tokenizers`` alone: the PyTriton venv
(``amad/serving/pytriton_server.py``) loads it from the amad package next to it.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from amad.data.saved_tokenizer import SavedTokenizer
from amad.export.onnx_runtime import OnnxModel
from amad.generation.predictor import DecodingPredictor


class ServedDecodeLoop:
    """The served model of an export folder: the task's inputs in, ``tokens`` and the decoded text out.

    Class attributes:
        predictor_class: the task's predictor (its ``encoder_graph`` and ``decoder`` are loaded).
        served_graph: the one model's graph name clients see (its ``amad.graph``).
        text_output: the name of the decoded-text output (``caption``).

    Args:
        folder: the export folder.
        generation: decoding settings, some of :class:`~amad.generation.config.GenerationConfig`'s
            fields (``beams``, ``max_length``, ...) over greedy up to the model's longest output
            (None: that; with beams, ``length_penalty`` 1 unless given).
        threads: ONNX Runtime's intra-op threads (0: its default).

    Attributes:
        inputs / outputs: ``(name, numpy dtype, shape without the batch axis)`` of the served tensors:
            :meth:`served_inputs` in (named as the predictor's batch keys), ``tokens`` ``[max_length]``
            int64 (padded with the padding id) and the text ``[1]`` bytes (UTF-8) out.
        metadata: the ``amad.*`` metadata clients read (the encoder graph's, ``amad.graph`` the served graph's).
    """

    predictor_class: ClassVar[type[DecodingPredictor]]
    served_graph: ClassVar[str]
    text_output: ClassVar[str]

    def __init__(self, folder: str | Path, generation: dict[str, Any] | None = None, threads: int = 0) -> None:
        folder = Path(folder)
        encoder = self.predictor_class.encoder_graph
        self.graphs = {name: OnnxModel(folder / f"{name}.onnx", threads=threads) for name in (encoder, "decoder")}
        metadata = self.graphs[encoder].metadata
        self.predictor = self.predictor_class(self.graphs)  # greedy up to the longest output
        if generation:  # over greedy's settings; beams rank by mean log-probability unless told
            settings = dataclasses.replace(self.predictor.generation, **{"length_penalty": 1.0, **generation})
            settings.validate("--generation")
            self.predictor = self.predictor.with_settings(generation=settings)
        self.preprocess = json.loads(metadata["amad.data.preprocess"])
        self.tokenizer = SavedTokenizer(metadata["amad.tokenizer"], self.preprocess["context_length"])
        self.inputs = self.served_inputs()
        self.outputs = [
            ("tokens", np.int64, (self.predictor.generation.max_length,)),
            (self.text_output, np.bytes_, (1,)),
        ]
        self.metadata = {
            **{key: value for key, value in metadata.items() if key.startswith("amad.")},
            "amad.graph": self.served_graph,
        }

    def served_inputs(self) -> list[tuple[str, Any, tuple[int, ...]]]:
        """The served inputs (``self.preprocess`` and ``self.predictor`` are set)."""
        raise NotImplementedError

    def __call__(self, *tensors: np.ndarray) -> dict[str, np.ndarray]:
        """The predictor's tokens of a batch (``tensors`` in the order of :attr:`inputs`) and their texts."""
        batch = {
            name: np.ascontiguousarray(tensor, dtype=dtype)
            for (name, dtype, _), tensor in zip(self.inputs, tensors, strict=True)
        }
        tokens = self.predictor(batch)["tokens"]
        texts = [self.tokenizer.decode([int(i) for i in row]).encode() for row in tokens]
        return {"tokens": tokens, self.text_output: np.array(texts, dtype=np.bytes_).reshape(-1, 1)}
