"""A model's exported graphs, and the task's predictor over them.

* A **graph** is a part of a model that is exported and served, called as ``graph(*inputs)`` and
  returning its named outputs ``{output name: tensor}`` (batch first). Exported and served graphs
  answer numpy arrays with numpy arrays (no torch needed) and torch tensors with tensors. A torch module, an ONNX
  Runtime session (:class:`~amad.export.onnx_runtime.OnnxModel`) and a TensorRT engine are graphs
  alike, so one procedure runs over any of them.
* A **predictor** is the task's one procedure from a batch of the task's inputs to its predictions
  over those graphs: one call for VQA and retrieval, an encode call then a decode loop for a
  generative task. Evaluation, the export parity gate and the benchmark run predictors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

BATCH_AXIS = "batch"
SEQUENCE_AXIS = "sequence"

Graph = Callable[..., dict[str, Any]]  # (*inputs) -> {output name: tensor}


def outputs_like_inputs(inputs: tuple, outputs: dict[str, Any]) -> dict[str, Any]:
    """A runtime's numpy ``outputs`` as the kind its graph was called with: numpy arrays for numpy
    ``inputs`` (torch is not imported), torch tensors otherwise (numbers only: text stays numpy)."""
    import numpy as np

    if all(isinstance(x, np.ndarray) for x in inputs):
        return outputs
    import torch

    return {  # text outputs (a served captioner's captions) stay numpy
        name: torch.from_numpy(np.asarray(value)) if np.asarray(value).dtype.kind in "biufc" else value
        for name, value in outputs.items()
    }


@dataclass(frozen=True)
class GraphSpec:
    """How one graph of a model becomes an ONNX graph.

    Attributes:
        input_names: names of the graph's inputs, in its call order.
        output_names: names of its outputs, in the order the exported graph lists them.
        example_inputs: inputs of a batch of 2 to trace with.
        metadata: ONNX metadata that lets a runtime use the file alone (vocabulary, preprocessing).
        batch_inputs: the graph's inputs from a dataset batch (parity checks and benchmarks).
        dynamic_axes: per input name, ``{axis: name}`` of its dynamic axes (``batch``, ``sequence``,
            ...; axes of one name share their size); inputs not named here have a dynamic batch
            axis 0 alone.
        axis_limits: the largest size of a named axis where the graph needs one (a sequence axis
            that indexes a table of positions); others are unbounded.
    """

    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    example_inputs: tuple[Any, ...]
    metadata: dict[str, str]
    batch_inputs: Callable[[dict], tuple]
    dynamic_axes: dict[str, dict[int, str]] = field(default_factory=dict)
    axis_limits: dict[str, int] = field(default_factory=dict)

    def axes_of(self, input_name: str) -> dict[int, str]:
        """The dynamic axes of one input."""
        return self.dynamic_axes.get(input_name, {0: BATCH_AXIS})

    def first_rows(self, inputs: tuple, count: int) -> tuple:
        """The first ``count`` samples of a batch of this graph's (torch) inputs, each input cut on its
        own batch axis (a key/value cache's is not the first)."""
        rows = []
        for name, value in zip(self.input_names, inputs, strict=True):
            axis = next(axis for axis, axis_name in self.axes_of(name).items() if axis_name == BATCH_AXIS)
            rows.append(value.narrow(axis, 0, count).contiguous())
        return tuple(rows)


@dataclass(frozen=True)
class GenerationCall:
    """A whole generation that the benchmark times as one call (captioning: image to last token).

    Attributes:
        inputs_of: the graph whose batch inputs the call takes (captioning: ``image``'s pixels).
        build: ``build(graphs)`` -> the call ``(*inputs) -> stats``, over one backend's graphs (torch
            modules or ONNX Runtime sessions); ``stats`` holds ``tokens`` (generated, end tokens
            included, all rows), ``steps`` (decoder calls) and what else the task measures (its cache
            bytes per generated token, read from the cache tensors).
        int8: whether the int8 graphs are timed too.
        baseline_of: the generation this one is the slow baseline of (captioning's uncached loop),
            whose speed-up over it is reported; None: none.
    """

    inputs_of: str
    build: Callable[[dict[str, Graph]], Callable[..., dict[str, float]]]
    int8: bool = True
    baseline_of: str | None = None


@dataclass
class ModelSource:
    """A model ready to predict, wherever its graphs run: a saved model folder (torch), an export
    folder or file (ONNX Runtime), or a Triton server (one client per thread).

    Attributes:
        task_name: the model's task (``params.yaml: task``).
        graphs: its graphs by name, as the task's :meth:`~amad.contracts.task.Task.graphs` names them.
        preprocess: the preprocessing stored with the model.
        state: what prediction needs of the prepared data's state (VQA: the answer vocabulary).
        origin: where it came from, for messages (``models/h2-amad``, ``localhost:8000``).
    """

    task_name: str
    graphs: dict[str, Graph]
    preprocess: Any
    state: dict
    origin: str


class Predictor:
    """Base class of the tasks' predictors: ``predictor(batch) -> {prediction name: tensor}``.

    Args:
        graphs: the model's graphs by name (torch modules or exported files).
    """

    def __init__(self, graphs: dict[str, Graph]) -> None:
        self.graphs = graphs

    def __call__(self, batch: dict) -> dict[str, Any]:
        """The predictions for one batch (batch first), from the batch's tensors on the graphs' device."""
        raise NotImplementedError
