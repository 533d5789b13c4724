"""ONNX export of any task's model, with the metadata needed to use the file alone (the session
that runs it: :mod:`amad.export.onnx_runtime`).

The graph's inputs, outputs and dynamic axes are the task's (:class:`~amad.contracts.graph.GraphSpec`):
a batch axis on every input, and the others the spec names (e.g. a sequence axis). The task's metadata (VQA: the answer vocabulary and the preprocessing)
is stored in the graph, so ``amad predict`` and the Triton client need nothing but the ``.onnx``
(and, for a Hugging Face tokenizer, the folder its metadata names).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import onnx
import torch

from amad.contracts.graph import GraphSpec
from amad.export.attention_for_export import with_export_attention

MAX_BATCH = 4096


class _OrderedOutputs(torch.nn.Module):
    """A graph module whose named outputs become a tuple in the spec's order (what ONNX lists)."""

    def __init__(self, graph: torch.nn.Module, output_names: tuple[str, ...]) -> None:
        super().__init__()
        self.model, self.output_names = graph, output_names  # not `graph`: torch.fx's GraphModule owns that name

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = self.model(*inputs)
        return tuple(outputs[name] for name in self.output_names)


def dynamic_shapes(spec: GraphSpec) -> tuple[dict, ...]:
    """``torch.export`` dims of every input, by position: one :class:`torch.export.Dim` per axis name,
    shared by the inputs that name it (``batch``: 1 to :data:`MAX_BATCH`)."""
    dims: dict[str, torch.export.Dim] = {}

    def dim(name: str) -> torch.export.Dim:
        if name not in dims:
            if name == "batch":
                dims[name] = torch.export.Dim(name, min=1, max=MAX_BATCH)
            elif name in spec.axis_limits:
                dims[name] = torch.export.Dim(name, max=spec.axis_limits[name])
            else:
                dims[name] = torch.export.Dim(name)
        return dims[name]

    return tuple(
        {axis: dim(name) for axis, name in spec.axes_of(input_name).items()} for input_name in spec.input_names
    )


def export_onnx(
    model: torch.nn.Module, spec: GraphSpec, path: str | Path, *, opset: int, extra_metadata: dict | None = None
) -> None:
    """Export the graph ``model`` with ``torch.onnx.export(dynamo=True)`` and the spec's dynamic axes.

    The graph is traced from :func:`with_export_attention`'s copy of the model (same function,
    fewer transposes); ``model`` itself is not changed.
    """
    model = _OrderedOutputs(with_export_attention(model.eval()), spec.output_names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model,
            spec.example_inputs,
            dynamo=True,
            opset_version=opset,
            input_names=list(spec.input_names),
            output_names=list(spec.output_names),
            dynamic_shapes={"inputs": dynamic_shapes(spec)},  # keyed by the forward argument (*inputs)
            verbose=False,
        )
    graph = program.model_proto
    set_metadata(graph, {**spec.metadata, **(extra_metadata or {})})
    onnx.save(graph, str(path))


def set_metadata(graph: onnx.ModelProto, metadata: dict[str, str]) -> None:
    existing = {entry.key: entry for entry in graph.metadata_props}
    for key, value in metadata.items():
        entry = existing.get(key) or graph.metadata_props.add()
        entry.key, entry.value = key, value
