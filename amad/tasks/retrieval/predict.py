"""``amad predict`` for retrieval: rank captions for each image and images for each caption, from any
model source (a saved model folder, its export ``exported/NAME`` with ``image.onnx`` and
``text.onnx``, a Triton server), through the task's predictor.

The model source decides the preprocessing (stored with it), so the embeddings are computed with
exactly the preprocessing the model was trained with. The code is numpy alone: with an export, no
torch is loaded.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from amad.contracts.graph import ModelSource, Predictor
from amad.data.preprocess import Preprocess
from amad.errors import AmadError


@dataclass
class Encoders:
    """The retrieval predictor over a model's ``image`` and ``text`` graphs (torch, ONNX or served),
    with the preprocessing stored with the model."""

    predictor: Predictor  # {"pixels"} -> image_embedding [N, E]; {"tokens"} -> text_embedding [N, E]
    preprocess: Preprocess


def encoders(source: ModelSource) -> Encoders:
    from amad.contracts.task import get_task

    return Encoders(get_task(source.task_name).predictor(source.graphs), source.preprocess)


def predict_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--image", action="append", default=[], help="an image file (repeat for several)")
    parser.add_argument("--caption", action="append", default=[], help="a caption (repeat for several)")


def predict(source: ModelSource, args: argparse.Namespace) -> None:
    """Print, as JSON, the captions ranked for each ``--image`` and the images for each ``--caption``."""
    if not args.image or not args.caption:
        raise AmadError("a retrieval model ranks: give at least one --image and one --caption")
    print(json.dumps(rank(encoders(source), args.image, args.caption), indent=2))


def rank(encoders: Encoders, images: list[str], captions: list[str]) -> dict:
    """``{"images": [{"image", "captions": [{"caption", "score"}...]}], "captions": [{"caption",
    "images": [...]}]}``, each list best first; scores are cosine similarities."""
    for image in images:
        if not Path(image).is_file():
            raise AmadError(f"--image {image}: no such file")
    for caption in captions:
        encoders.preprocess.check_text(caption, "--caption", "caption")
    pixels = np.stack([encoders.preprocess.image_array(i) for i in images])
    image_embeddings = np.asarray(encoders.predictor({"pixels": pixels})["image_embedding"], np.float32)
    tokens = encoders.preprocess.token_ids(captions)
    caption_embeddings = np.asarray(encoders.predictor({"tokens": tokens})["text_embedding"], np.float32)
    scores = (image_embeddings @ caption_embeddings.T).tolist()  # (images, captions)

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
