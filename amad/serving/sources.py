"""Where a model to predict with comes from: a saved model folder, an export folder or one exported
file (and, in :mod:`amad.serving.client`, a Triton server). Each gives a
:class:`~amad.contracts.graph.ModelSource`, and the task's predictor runs over its graphs alike.

An export's task, preprocessing and state are read from the graphs' ONNX metadata (``amad.task``,
``amad.graph``, ``amad.data.preprocess``, ``amad.tokenizer`` and what the task adds), so an export
folder needs no checkout, and predicting with it needs no torch. Every source's graphs answer numpy
arrays with numpy arrays (a saved model's torch graphs too), so the tasks' ``amad predict`` code is
numpy alone.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from amad.contracts.graph import ModelSource
from amad.contracts.task import get_task
from amad.errors import AmadError


def source_from_metadata(metadata: dict[str, str], graphs: dict, origin: str) -> ModelSource:
    """A source of ``graphs`` whose task, preprocessing and state ``metadata`` gives (AmadError
    naming ``origin`` where it is not an amad model's)."""
    if "amad.task" not in metadata or "amad.data.preprocess" not in metadata:
        raise AmadError(f"{origin}: not an amad export (no amad.task / amad.data.preprocess metadata)")
    task = get_task(metadata["amad.task"], f"{origin}: amad.task")
    missing = [graph for graph in task.graph_names if graph not in graphs]
    if missing and not (task.served_graph is not None and set(graphs) == {task.served_graph}):
        raise AmadError(
            f"{origin}: a {task.name} model predicts with its graphs {', '.join(task.graph_names)}; "
            f"{', '.join(missing)} missing"
        )
    return ModelSource(
        task.name, graphs, task.preprocess_from_metadata(metadata), task.state_from_metadata(metadata), origin
    )


class _NumpyGraph:
    """A saved model's torch graph called as an exported one is: numpy arrays in, numpy arrays out."""

    def __init__(self, graph) -> None:
        self.graph = graph
        self.metadata = getattr(graph, "metadata", {})  # what a predictor reads of it (captioning's decoding)

    def __call__(self, *inputs):
        import torch

        with torch.inference_mode():
            outputs = self.graph(*(torch.from_numpy(x) if isinstance(x, np.ndarray) else x for x in inputs))
        return {name: value.numpy() for name, value in outputs.items()}


def _model_folder(path: Path) -> ModelSource:
    from amad.models import load_model

    loaded = load_model(path)
    graphs = {name: _NumpyGraph(graph) for name, graph in loaded.task.graphs(loaded.model.eval()).items()}
    return ModelSource(loaded.task_name, graphs, loaded.preprocess, loaded.state, str(path))


def export_graph_names(export_dir: Path) -> list[str]:
    """The graphs of an export folder, in order (its ``export.json``; else its fp32 ``.onnx`` files)."""
    index = export_dir / "export.json"
    if index.is_file():
        return list(json.loads(index.read_text()).get("graphs", ["model"]))
    return sorted(p.name.split(".")[0] for p in export_dir.glob("*.onnx") if p.name.count(".") == 1)


def _exported(files: dict[str, Path], origin: str) -> ModelSource:
    from amad.export.onnx_runtime import OnnxModel

    graphs = {graph: OnnxModel(path) for graph, path in files.items()}
    return source_from_metadata(next(iter(graphs.values())).metadata, graphs, origin)


def load_source(source: str | Path, *, int8: bool = False) -> ModelSource:
    """A model folder (``models/NAME``), an export folder (``exported/NAME``; ``int8``: its
    ``.int8.onnx`` files) or one exported ``.onnx`` file of a one-graph model."""
    path = Path(source)
    if (path / "config.json").is_file():
        if int8:
            raise AmadError(f"--int8 reads exported files: use --model exported/{path.name} (not a model folder)")
        return _model_folder(path)
    if path.is_dir():
        suffix = ".int8.onnx" if int8 else ".onnx"
        names = export_graph_names(path)
        files = {graph: path / f"{graph}{suffix}" for graph in names}
        absent = [str(file) for file in files.values() if not file.is_file()]
        if not names or absent:
            raise AmadError(
                f"--model {path}: expected a model folder (models/NAME) or an export folder; "
                f"{', '.join(absent) or f'no {suffix} graph'} missing (run the export stage: dvc repro export)"
            )
        return _exported(files, str(path))
    if path.suffix == ".onnx" and path.is_file():
        if int8:
            raise AmadError(f"--int8 picks an export folder's .int8.onnx files; --model {path} already names a file")
        from amad.export.onnx_runtime import read_metadata

        return _exported({read_metadata(path).get("amad.graph", "model"): path}, str(path))
    if not path.exists():
        raise AmadError(f"--model {path}: no such file or folder")
    raise AmadError(f"--model {path}: expected a model folder (models/NAME), an export folder or an .onnx file")
