"""``amad predict``: answers from a saved model folder or an exported ONNX file.

The model source decides the preprocessing (stored with it), so predictions use exactly the
preprocessing the model was trained with.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from amad.atomic import atomic_file
from amad.contracts.graph import Predictor
from amad.errors import AmadError
from amad.preprocess import Preprocess
from amad.tasks.vqa.manifest import read_manifest
from amad.tasks.vqa.task import AnswerPredictor


@dataclass
class Answerer:
    """The VQA predictor over a model's ``model`` graph (torch or ONNX), with the answer vocabulary
    and the preprocessing stored with the model."""

    predictor: Predictor
    answers: list[str]
    preprocess: Preprocess

    def top_k(self, pixels: torch.Tensor, tokens: torch.Tensor, k: int) -> list[list[tuple[str, float]]]:
        """Top-``k`` (answer, probability) per sample of a batch."""
        with torch.inference_mode():
            probabilities = self.predictor({"pixels": pixels, "tokens": tokens})["logits"].float().softmax(-1)
        scores, indices = probabilities.topk(min(k, len(self.answers)), dim=-1)
        return [
            [(self.answers[i], float(s)) for s, i in zip(row_s, row_i)]
            for row_s, row_i in zip(scores.tolist(), indices.tolist())
        ]


def read_exported_metadata(path: str | Path) -> tuple[list[str], Preprocess]:
    """The answer vocabulary and preprocessing stored in an exported VQA model."""
    import json

    from amad.export.onnx_model import read_metadata

    metadata = read_metadata(path)
    if "amad.answers" not in metadata or "amad.preprocess" not in metadata:
        raise AmadError(f"{path}: not an amad VQA export (no amad.answers / amad.preprocess metadata)")
    return json.loads(metadata["amad.answers"]), Preprocess.from_dict(json.loads(metadata["amad.preprocess"]))


def load_predictor(source: str | Path) -> Answerer:
    """A model folder (``models/NAME``) or an exported ``.onnx`` file (fp32 or int8)."""
    source = Path(source)
    if source.is_dir():
        from amad.models import load_model

        loaded = load_model(source)
        if loaded.task_name != "vqa":
            raise AmadError(f"--model {source}: a {loaded.task_name!r} model; amad predict answers VQA questions")
        return Answerer(
            loaded.task.predictor(loaded.task.graphs(loaded.model.eval())), loaded.state["answers"], loaded.preprocess
        )
    if source.suffix == ".onnx":
        from amad.export.onnx_model import OnnxModel

        session = OnnxModel(source)
        answers, preprocess = read_exported_metadata(source)
        return Answerer(AnswerPredictor({"model": session}), answers, preprocess)
    if not source.exists():
        raise AmadError(f"--model {source}: no such file or folder")
    raise AmadError(f"--model {source}: expected a model folder (models/NAME) or an .onnx file")


def predict_question(predictor: Answerer, image: str | Path, question: str, top_k: int = 1) -> list[tuple[str, float]]:
    if not Path(image).is_file():
        raise AmadError(f"--image {image}: no such file")
    pixels = predictor.preprocess.load_image(image)[None]
    tokens = predictor.preprocess.tokenize([question])
    return predictor.top_k(pixels, tokens, top_k)[0]


def predict_manifest(
    predictor: Answerer, manifest: str | Path, out: str | Path, *, top_k: int = 1, batch_size: int = 64
) -> int:
    """Write ``{"id", "answer", "score"}`` (+ ``"top_k"`` when k > 1) per line; returns the count."""
    import json

    records = read_manifest(manifest, require_answers=False)
    root = Path(manifest).parent
    with atomic_file(out) as stream:
        for start in range(0, len(records), batch_size):
            batch = records[start : start + batch_size]
            pixels = torch.stack([predictor.preprocess.load_image(root / r.image) for r in batch])
            tokens = predictor.preprocess.tokenize([r.question for r in batch])
            for record, ranked in zip(batch, predictor.top_k(pixels, tokens, top_k)):
                line = {"id": record.id, "answer": ranked[0][0], "score": round(ranked[0][1], 6)}
                if top_k > 1:
                    line["top_k"] = [{"answer": a, "score": round(s, 6)} for a, s in ranked]
                stream.write(json.dumps(line) + "\n")
    return len(records)
