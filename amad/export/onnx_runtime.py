"""An exported graph on ONNX Runtime behind the torch graph's call, and an ONNX file's metadata.

Needs onnxruntime and numpy alone (no torch): ``amad predict`` on an export runs from here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from amad.contracts.graph import outputs_like_inputs
from amad.errors import AmadError


def read_metadata(path: str | Path) -> dict[str, str]:
    """The metadata stored in an ONNX file."""
    import onnx

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
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)

    def run(self, *inputs: np.ndarray) -> list[np.ndarray]:
        """Every output, in the graph's order, of numpy ``inputs`` in its input order."""
        return self.session.run(list(self.output_names), dict(zip(self.input_names, inputs)))

    def __call__(self, *inputs: Any) -> dict[str, Any]:
        """The named outputs of numpy arrays or torch tensors, as the same kind (torch: on the CPU)."""
        arrays = [x if isinstance(x, np.ndarray) else x.cpu().numpy() for x in inputs]
        return outputs_like_inputs(inputs, dict(zip(self.output_names, self.run(*arrays))))
