"""Generate a Triton Inference Server model repository for one exported model.

One Triton model per exported graph; inputs and outputs are read from the ONNX graph itself::

    exported/triton/                     VQA (graph `model`)
      amad_vqa/                          onnxruntime backend, dynamic batching
        config.pbtxt
        answers.txt                      label file: `classification` requests return answers
        1/model.onnx
      amad_vqa_trt/                      tensorrt_plan backend (only when export built model.plan)
        config.pbtxt, answers.txt, 1/model.plan

    exported/triton/                     retrieval (graphs `image` and `text`)
      amad_retrieval_image/  1/model.onnx, config.pbtxt   (pixels -> image_embedding)
      amad_retrieval_text/   1/model.onnx, config.pbtxt   (tokens -> text_embedding)
      amad_retrieval_image_trt/, amad_retrieval_text_trt/  where export built the .plan files

    exported/triton/                     captioning (graphs `image` and `decoder`)
      amad_captioning_image/, amad_captioning_decoder/    unbatched (max_batch_size 0, every axis in
                                         dims): their key/value caches have the batch on axis 1
    (translation alike: amad_translation_encoder/, amad_translation_decoder/)

A native Triton runs no Python decode loop here: the client steps the decoder (one request per
token). ``amad serve`` (PyTriton) serves a captioning or translation export as one model instead, the
loop in the server with dynamic batching (:mod:`amad.generation.serving`).

Preprocessing and the task's procedure run in the client (``amad predict --server``,
:mod:`amad.serving.client`): each config's ``parameters`` hold its graph's ``amad.*`` metadata
(task, graph name, preprocessing, and what the task adds, such as VQA's answer vocabulary), so a
client needs only the server's address. A graph whose metadata has ``amad.answers`` (labels of its
one classification output) also gets a label file, so Triton's ``classification`` requests return
labels.

Usage: python -m amad.serving.repository exported/h4-minilm exported/triton --max-batch 32 [--gpu]
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import onnx

from amad.atomic import atomic_dir
from amad.contracts.graph import BATCH_AXIS
from amad.errors import AmadError
from amad.export.onnx_runtime import read_metadata
from amad.serving.names import triton_model_name
from amad.serving.sources import export_graph_names

TRITON_TYPES = {
    onnx.TensorProto.FLOAT: "TYPE_FP32",
    onnx.TensorProto.FLOAT16: "TYPE_FP16",
    onnx.TensorProto.INT64: "TYPE_INT64",
    onnx.TensorProto.INT32: "TYPE_INT32",
    onnx.TensorProto.BOOL: "TYPE_BOOL",  # masks (translation's source_real)
}


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def batched_first(path: Path) -> bool:
    """Whether every input and output of an ONNX graph has its batch on axis 0, as Triton's batching
    needs (a captioning decoder's key/value cache has it on axis 1: that graph is served unbatched)."""
    graph = onnx.load(str(path), load_external_data=False).graph
    for value in [*graph.input, *graph.output]:
        names = [d.dim_param for d in value.type.tensor_type.shape.dim]
        if BATCH_AXIS in names[1:]:
            return False
    return True


def graph_tensors(
    path: Path, batched: bool = True
) -> tuple[list[tuple[str, str, list[int]]], list[tuple[str, str, list[int]]]]:
    """``(inputs, outputs)`` of an ONNX graph as ``(name, Triton type, dims)``: without the batch
    axis where ``batched`` (Triton's ``max_batch_size`` > 0), else every axis."""
    graph = onnx.load(str(path), load_external_data=False).graph
    first = 1 if batched else 0

    def describe(value: onnx.ValueInfoProto) -> tuple[str, str, list[int]]:
        tensor = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim[first:]]
        if tensor.elem_type not in TRITON_TYPES:
            kind = onnx.TensorProto.DataType.Name(tensor.elem_type)
            known = ", ".join(onnx.TensorProto.DataType.Name(known) for known in TRITON_TYPES)
            raise AmadError(f"{path}: {value.name} is {kind}, which amad's Triton repositories do not map ({known})")
        return value.name, TRITON_TYPES[tensor.elem_type], dims

    return [describe(v) for v in graph.input], [describe(v) for v in graph.output]


def model_config(
    name: str,
    backend: str,
    *,
    inputs: list[tuple[str, str, list[int]]],
    outputs: list[tuple[str, str, list[int]]],
    max_batch_size: int,
    instance_kind: str,
    parameters: dict[str, str],
    label_file: str | None = None,
) -> str:
    """``config.pbtxt`` text (Triton protobuf text format)."""
    platform = 'platform: "tensorrt_plan"' if backend == "tensorrt_plan" else 'backend: "onnxruntime"'
    preferred = sorted({size for size in (8, max_batch_size) if size <= max_batch_size})
    label = f' label_filename: "{label_file}"' if label_file else ""
    batching = (
        "dynamic_batching {\n"
        f"  preferred_batch_size: [ {', '.join(str(s) for s in preferred)} ]\n"
        "  max_queue_delay_microseconds: 2000\n}\n"
        if max_batch_size > 0
        else ""  # unbatched: every request's tensors as they come, axis for axis
    )

    def tensors(entries, extra=""):
        return ",\n".join(
            f'  {{ name: "{n}" data_type: {t} dims: [ {", ".join(map(str, d))} ]{extra} }}' for n, t, d in entries
        )

    params = "".join(
        f'parameters {{ key: "{key}" value: {{ string_value: "{_escape(value)}" }} }}\n'
        for key, value in parameters.items()
    )
    return f"""name: "{name}"
{platform}
max_batch_size: {max_batch_size}
input [
{tensors(inputs)}
]
output [
{tensors(outputs, label)}
]
{batching}instance_group [ {{ count: 1 kind: {instance_kind} }} ]
{params}"""


def served_parameters(metadata: dict[str, str], origin: Path) -> dict[str, str]:
    """The ``amad.*`` metadata of an exported graph, which its Triton config publishes: all but the
    saved tokenizers (megabytes of JSON: ``amad.tokenizer``, translation's ``amad.source_tokenizer``; a
    client of a model repository tokenises with the training tokenizer, which needs open_clip or
    transformers, or reads the export folder: ``--export``)."""
    if "amad.task" not in metadata or "amad.data.preprocess" not in metadata:
        raise AmadError(f"{origin}: not an amad export (no amad.task / amad.data.preprocess metadata)")
    saved = ("amad.tokenizer", "amad.source_tokenizer")
    return {key: value for key, value in metadata.items() if key.startswith("amad.") and key not in saved}


def write_model_repository(export_dir: Path, out: Path, *, max_batch: int, gpu: bool = False) -> list[str]:
    """Write the repository atomically; returns the model names it contains."""
    models = []  # (Triton model name, backend, artefact, instance kind, graph, parameters)
    for graph in export_graph_names(export_dir):
        parameters = served_parameters(read_metadata(export_dir / f"{graph}.onnx"), export_dir / f"{graph}.onnx")
        base = triton_model_name(parameters["amad.task"], graph)
        models.append((base, "onnxruntime", f"{graph}.onnx", "KIND_GPU" if gpu else "KIND_CPU", graph, parameters))
        if (export_dir / f"{graph}.plan").exists():
            models.append((f"{base}_trt", "tensorrt_plan", f"{graph}.plan", "KIND_GPU", graph, parameters))
    with atomic_dir(out) as staging:
        for name, backend, artefact, kind, graph, parameters in models:
            batched = batched_first(export_dir / f"{graph}.onnx")
            inputs, outputs = graph_tensors(export_dir / f"{graph}.onnx", batched)
            target = "model.plan" if backend == "tensorrt_plan" else "model.onnx"
            (staging / name / "1").mkdir(parents=True)
            shutil.copy2(export_dir / artefact, staging / name / "1" / target)
            labels = json.loads(parameters["amad.answers"]) if "amad.answers" in parameters else None
            if labels is not None:
                (staging / name / "answers.txt").write_text("\n".join(labels) + "\n")
            config = model_config(
                name,
                backend,
                inputs=inputs,
                outputs=outputs,
                max_batch_size=max_batch if batched else 0,
                instance_kind=kind,
                parameters=parameters,
                label_file="answers.txt" if labels is not None else None,
            )
            (staging / name / "config.pbtxt").write_text(config)
    return [name for name, *_ in models]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("export_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--gpu", action="store_true", help="GPU instance group for the onnxruntime model")
    parser.add_argument("--max-batch", type=int, required=True, help="as export.tensorrt.max_batch in params.yaml")
    args = parser.parse_args()
    names = write_model_repository(args.export_dir, args.out, max_batch=args.max_batch, gpu=args.gpu)
    print(f"wrote {', '.join(names)} to {args.out}")


if __name__ == "__main__":
    main()
