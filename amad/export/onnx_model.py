"""ONNX export of any task's model, with the metadata needed to use the file alone, and an
ONNX Runtime session behind the same call as the torch model.

The graph's inputs, outputs and dynamic axes are the task's (:class:`~amad.contracts.graph.GraphSpec`):
a batch axis on every input, and the others the spec names (e.g. a sequence axis). The task's metadata (VQA: the answer vocabulary and the preprocessing)
is stored in the graph, so ``amad predict`` and the Triton client need nothing but the ``.onnx``
(and, for a Hugging Face tokenizer, the folder its metadata names).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

from amad.contracts.graph import GraphSpec
from amad.errors import AmadError
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
            dims[name] = torch.export.Dim(name, min=1, max=MAX_BATCH) if name == "batch" else torch.export.Dim(name)
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


def read_metadata(path: str | Path) -> dict[str, str]:
    """The metadata stored in an ONNX file."""
    graph = onnx.load(str(path), load_external_data=False)
    return {entry.key: entry.value for entry in graph.metadata_props}


class OnnxModel:
    """An exported graph behind the torch graph's call: ``(*inputs) -> {output name: tensor}``.

    Args:
        path: the ``.onnx`` file.
        threads: intra-op threads (0: ONNX Runtime's default).
        idle_spinning: whether worker threads go on spinning after a call returns, as ONNX Runtime's
            do by default (about 0.2 cores for ~0.2 s here). Turn it off where sessions take turns
            on the cores: they then spin only within a call, as a server's do between its
            operators, and stop at its end instead of slowing the next session's call.
        providers: ONNX Runtime execution providers (default: CPU).
    """

    def __init__(
        self, path: str | Path, *, threads: int = 0, idle_spinning: bool = True, providers: list[str] | None = None
    ) -> None:
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise AmadError(f"{path}: ONNX model not found")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        if not idle_spinning:
            options.add_session_config_entry("session.force_spinning_stop", "1")
        self.session = ort.InferenceSession(str(path), options, providers=providers or ["CPUExecutionProvider"])
        self.input_names = tuple(i.name for i in self.session.get_inputs())
        self.output_names = tuple(o.name for o in self.session.get_outputs())
        self.metadata = read_metadata(path)

    def run(self, *inputs: np.ndarray) -> list[np.ndarray]:
        """Every output, in the graph's order, of numpy ``inputs`` in its input order."""
        return self.session.run(list(self.output_names), dict(zip(self.input_names, inputs)))

    def __call__(self, *inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        outputs = self.run(*(x.cpu().numpy() for x in inputs))
        return {name: torch.from_numpy(value) for name, value in zip(self.output_names, outputs)}
