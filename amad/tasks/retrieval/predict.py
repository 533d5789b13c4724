"""``amad predict`` for retrieval: rank captions for each image and images for each caption, from a
saved model folder or its exported ONNX files (``exported/NAME``: ``image.onnx`` and ``text.onnx``).

The model source decides the preprocessing (stored with it), so the embeddings are computed with
exactly the preprocessing the model was trained with.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from amad.contracts.graph import Predictor
from amad.errors import AmadError
from amad.preprocess import Preprocess
from amad.tasks.retrieval.task import EmbeddingPredictor


@dataclass
class Encoders:
    """The retrieval predictor over a model's ``image`` and ``text`` graphs (torch or ONNX), with the
    preprocessing stored with the model."""

    predictor: Predictor  # {"pixels"} -> image_embedding [N, E]; {"tokens"} -> text_embedding [N, E]
    preprocess: Preprocess


def load_encoders(source: str | Path, *, int8: bool = False) -> Encoders:
    """A retrieval model folder (``models/NAME``) or an export folder (``exported/NAME``; ``int8``:
    its ``.int8.onnx`` files)."""
    source = Path(source)
    if (source / "config.json").is_file():
        if int8:
            raise AmadError(f"--int8 reads exported files: use --model exported/{source.name} (not a model folder)")
        from amad.models import load_model

        loaded = load_model(source)
        if loaded.task_name != "retrieval":
            raise AmadError(f"--model {source}: a {loaded.task_name!r} model, not a retrieval model")
        return Encoders(loaded.task.predictor(loaded.task.graphs(loaded.model.eval())), loaded.preprocess)
    suffix = ".int8.onnx" if int8 else ".onnx"
    files = {graph: source / f"{graph}{suffix}" for graph in ("image", "text")}
    if source.is_dir() and all(path.is_file() for path in files.values()):
        from amad.export.onnx_model import OnnxModel

        sessions = {graph: OnnxModel(path) for graph, path in files.items()}
        metadata = sessions["image"].metadata
        if metadata.get("amad.task") != "retrieval" or "amad.preprocess" not in metadata:
            raise AmadError(f"--model {source}: {files['image']} is not an amad retrieval export")
        preprocess = Preprocess.from_dict(json.loads(metadata["amad.preprocess"]))
        return Encoders(EmbeddingPredictor(sessions), preprocess)
    raise AmadError(
        f"--model {source}: expected a retrieval model folder (models/NAME) or an export folder holding "
        f"image{suffix} and text{suffix} (exported/NAME)"
    )


def rank(encoders: Encoders, images: list[str], captions: list[str]) -> dict:
    """``{"images": [{"image", "captions": [{"caption", "score"}...]}], "captions": [{"caption",
    "images": [...]}]}``, each list best first; scores are cosine similarities."""
    for image in images:
        if not Path(image).is_file():
            raise AmadError(f"--image {image}: no such file")
    for caption in captions:
        if not caption.strip():
            raise AmadError("--caption: empty caption")
    with torch.inference_mode():
        pixels = torch.stack([encoders.preprocess.load_image(i) for i in images])
        image_embeddings = encoders.predictor({"pixels": pixels})["image_embedding"]
        caption_embeddings = encoders.predictor({"tokens": encoders.preprocess.tokenize(captions)})["text_embedding"]
    scores = (image_embeddings.float() @ caption_embeddings.float().t()).tolist()  # (images, captions)

    def ranked(row: list[float], names: list[str], key: str) -> list[dict]:
        order = sorted(range(len(row)), key=lambda i: -row[i])
        return [{key: names[i], "score": round(row[i], 6)} for i in order]

    return {
        "images": [{"image": im, "captions": ranked(scores[i], captions, "caption")} for i, im in enumerate(images)],
        "captions": [
            {"caption": c, "images": ranked([row[j] for row in scores], images, "image")}
            for j, c in enumerate(captions)
        ],
    }
