"""ONNX export of any task's model, with the metadata needed to use the file alone, and an
ONNX Runtime session behind the same call as the torch model.

The graph's inputs and outputs are the task's (:class:`~amad.tasks.base.ExportSpec`); every input
has a dynamic batch axis. The task's metadata (VQA: the answer vocabulary and the preprocessing)
is stored in the graph, so ``amad predict`` and the Triton client need nothing but the ``.onnx``
(and, for a Hugging Face tokenizer, the folder its metadata names).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

from amad.contracts.task import ExportSpec
from amad.errors import AmadError
from amad.export.attention_for_export import with_export_attention

MAX_BATCH = 4096


def export_onnx(
    model: torch.nn.Module, spec: ExportSpec, path: str | Path, *, opset: int, extra_metadata: dict | None = None
) -> None:
    """Export ``model`` with ``torch.onnx.export(dynamo=True)`` and a dynamic batch axis on every input.

    The graph is traced from :func:`with_export_attention`'s copy of the model (same function,
    fewer transposes); ``model`` itself is not changed.
    """
    model = with_export_attention(model.eval())
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model,
            spec.example_inputs,
            dynamo=True,
            opset_version=opset,
            input_names=list(spec.input_names),
            output_names=list(spec.output_names),
            dynamic_shapes=tuple({0: batch} for _ in spec.example_inputs),
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
    """An exported model behind the torch model's call: ``(*inputs) -> first output`` (tensors).

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
        self.output_name = self.session.get_outputs()[0].name
        self.metadata = read_metadata(path)

    def run(self, *inputs: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], dict(zip(self.input_names, inputs)))[0]

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.run(*(x.cpu().numpy() for x in inputs)))
