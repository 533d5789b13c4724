"""Generate a Triton Inference Server model repository for one exported model.

    exported/triton/
      amad_vqa/                 onnxruntime backend, dynamic batching
        config.pbtxt
        answers.txt             label file: `classification` requests return answers
        1/model.onnx
      amad_vqa_trt/             tensorrt_plan backend (only when export built model.plan)
        config.pbtxt, answers.txt, 1/model.plan

Preprocessing happens in the client (deploy/client.py); its settings and the answer vocabulary
are stored in each config's ``parameters`` (``amad.preprocess``, ``amad.answers``), so a client
needs only the server's address.

Usage: python -m deploy.triton exported/h2-amad exported/triton [--gpu]
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from amad.atomic import atomic_dir
from amad.tasks.vqa.predict import read_exported_metadata

ONNX_MODEL = "amad_vqa"
TENSORRT_MODEL = "amad_vqa_trt"


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def model_config(
    name: str,
    backend: str,
    *,
    image_size: int,
    context_length: int,
    num_answers: int,
    max_batch_size: int,
    instance_kind: str,
    preprocess_json: str,
    answers_json: str,
) -> str:
    """``config.pbtxt`` text (Triton protobuf text format)."""
    platform = 'platform: "tensorrt_plan"' if backend == "tensorrt_plan" else 'backend: "onnxruntime"'
    preferred = sorted({size for size in (8, max_batch_size) if size <= max_batch_size})
    preprocess, answers = _escape(preprocess_json), _escape(answers_json)
    return f"""name: "{name}"
{platform}
max_batch_size: {max_batch_size}
input [
  {{ name: "pixels" data_type: TYPE_FP32 dims: [ 3, {image_size}, {image_size} ] }},
  {{ name: "tokens" data_type: TYPE_INT64 dims: [ {context_length} ] }}
]
output [
  {{ name: "logits" data_type: TYPE_FP32 dims: [ {num_answers} ] label_filename: "answers.txt" }}
]
dynamic_batching {{
  preferred_batch_size: [ {", ".join(str(s) for s in preferred)} ]
  max_queue_delay_microseconds: 2000
}}
instance_group [ {{ count: 1 kind: {instance_kind} }} ]
parameters {{ key: "amad.preprocess" value: {{ string_value: "{preprocess}" }} }}
parameters {{ key: "amad.answers" value: {{ string_value: "{answers}" }} }}
"""


def write_model_repository(export_dir: Path, out: Path, *, max_batch: int, gpu: bool = False) -> list[str]:
    """Write the repository atomically; returns the model names it contains."""
    answers, preprocess = read_exported_metadata(export_dir / "model.onnx")
    common = {
        "image_size": preprocess.image_size,
        "context_length": preprocess.context_length,
        "num_answers": len(answers),
        "max_batch_size": max_batch,
        "preprocess_json": json.dumps(preprocess.to_dict()),
        "answers_json": json.dumps(answers),
    }
    models = [(ONNX_MODEL, "onnxruntime", "model.onnx", "KIND_GPU" if gpu else "KIND_CPU")]
    if (export_dir / "model.plan").exists():
        models.append((TENSORRT_MODEL, "tensorrt_plan", "model.plan", "KIND_GPU"))
    with atomic_dir(out) as staging:
        for name, backend, artefact, kind in models:
            (staging / name / "1").mkdir(parents=True)
            shutil.copy2(export_dir / artefact, staging / name / "1" / artefact)
            (staging / name / "answers.txt").write_text("\n".join(answers) + "\n")
            (staging / name / "config.pbtxt").write_text(model_config(name, backend, instance_kind=kind, **common))
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
