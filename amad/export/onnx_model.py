"""ONNX export with the metadata needed to serve the file alone, and an ONNX Runtime classifier.

The exported graph takes ``pixels`` (float32 ``[B, 3, H, W]``, already normalised) and ``tokens``
(int64 ``[B, L]``) and returns ``logits`` (``[B, A]``); the batch axis is dynamic. The answer
vocabulary and the preprocessing are stored as ONNX metadata (``amad.answers``,
``amad.preprocess``), so ``amad predict`` and the Triton client need nothing but the ``.onnx``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

from amad.errors import AmadError
from amad.export.attention_for_export import with_export_attention
from amad.preprocess import Preprocess

INPUTS = ("pixels", "tokens")
OUTPUT = "logits"
MAX_BATCH = 4096


def export_onnx(
    model: torch.nn.Module,
    preprocess: Preprocess,
    answers: list[str],
    path: str | Path,
    *,
    opset: int = 18,
    extra_metadata: dict[str, str] | None = None,
) -> None:
    """Export ``model`` with ``torch.onnx.export(dynamo=True)`` and a dynamic batch axis.

    The graph is traced from :func:`with_export_attention`'s copy of the model (same function,
    fewer transposes); ``model`` itself is not changed.
    """
    model = with_export_attention(model.eval())
    pixels = torch.zeros(2, 3, preprocess.image_size, preprocess.image_size)
    tokens = preprocess.tokenize(["what is this?", "is there a circle?"])
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model,
            (pixels, tokens),
            dynamo=True,
            opset_version=opset,
            input_names=list(INPUTS),
            output_names=[OUTPUT],
            dynamic_shapes={"pixels": {0: batch}, "tokens": {0: batch}},
            verbose=False,
        )
    graph = program.model_proto
    metadata = {
        "amad.answers": json.dumps(answers),
        "amad.preprocess": json.dumps(preprocess.to_dict()),
        **(extra_metadata or {}),
    }
    set_metadata(graph, metadata)
    onnx.save(graph, str(path))


def set_metadata(graph: onnx.ModelProto, metadata: dict[str, str]) -> None:
    existing = {entry.key: entry for entry in graph.metadata_props}
    for key, value in metadata.items():
        entry = existing.get(key) or graph.metadata_props.add()
        entry.key, entry.value = key, value


def read_metadata(path: str | Path) -> tuple[list[str], Preprocess]:
    """Answers and preprocessing stored in an exported model."""
    graph = onnx.load(str(path), load_external_data=False)
    props = {entry.key: entry.value for entry in graph.metadata_props}
    if "amad.answers" not in props or "amad.preprocess" not in props:
        raise AmadError(f"{path}: not an amad export (no amad.answers / amad.preprocess metadata)")
    return json.loads(props["amad.answers"]), Preprocess.from_dict(json.loads(props["amad.preprocess"]))


class OnnxClassifier:
    """An exported model behind the same ``(pixels, tokens) -> logits`` call as the torch model."""

    def __init__(
        self, path: str | Path, *, threads: int = 0, spinning: bool = True, providers: list[str] | None = None
    ) -> None:
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise AmadError(f"{path}: ONNX model not found")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        if not spinning:  # idle worker threads sleep instead of spinning (fair when sessions take turns)
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), options, providers=providers or ["CPUExecutionProvider"])
        self.answers, self.preprocess = read_metadata(path)

    def run(self, pixels: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        return self.session.run([OUTPUT], {"pixels": pixels, "tokens": tokens})[0]

    def __call__(self, pixels: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.run(pixels.cpu().numpy(), tokens.cpu().numpy()))
