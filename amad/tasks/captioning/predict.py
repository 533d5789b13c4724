"""``amad predict`` for captioning: a caption for each image, from any model source (a saved model
folder, its export ``exported/NAME`` with ``image.onnx`` and ``decoder.onnx``, a Triton server that
runs the decode loop), through the task's predictor.

``--image x.jpg`` (repeatable) prints one JSON object per image (``image``, ``caption``,
``tokens``); ``--manifest images.jsonl`` reads JSON lines ``{"id": ..., "image": ...}`` (image paths
relative to the manifest's folder) and writes ``{"id", "image", "caption"}`` lines to ``--out`` (or
prints them). ``--beams`` and the other decoding flags apply to local models; a server decodes with
its own settings (``amad serve ... --beams``). numpy alone with an export: no torch is loaded.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from amad.contracts.graph import ModelSource
from amad.errors import AmadError
from amad.generation.predict_flags import (
    checked_file,
    decoding_arguments,
    decoding_predictor,
    emit,
    read_request_manifest,
    unpadded,
)

BATCH = 16  # images per decode run


def predict_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--image", action="append", default=[], help="an image file (repeat for several)")
    parser.add_argument("--manifest", help='JSON lines {"id": ..., "image": ...}, paths relative to its folder')
    parser.add_argument("--out", help="with --manifest: the JSONL file to write (default: print)")
    decoding_arguments(parser, "caption")


def caption_images(source: ModelSource, predictor, images: list[Path]) -> list[dict]:
    """``{"caption", "tokens"}`` per image (tokens without padding), decoded in batches of :data:`BATCH`."""
    results = []
    for start in range(0, len(images), BATCH):
        pixels = np.stack([source.preprocess.image_array(image) for image in images[start : start + BATCH]])
        tokens = np.asarray(predictor({"pixels": pixels})["tokens"])
        for row in tokens:
            results.append({"caption": source.preprocess.decode([int(i) for i in row]), "tokens": unpadded(row)})
    return results


def predict(source: ModelSource, args: argparse.Namespace) -> None:
    if bool(args.image) == bool(args.manifest):
        raise AmadError("a captioning model captions images: give --image (repeatable) or --manifest, not both")
    if args.out and not args.manifest:
        raise AmadError("--out writes a --manifest's captions; --image prints them")
    if args.image:
        rows = [(None, checked_file(image, "--image")) for image in args.image]
    else:
        rows = [(row["id"], row["image"]) for row in read_request_manifest(args.manifest, {"id": str, "image": str})]
    results = caption_images(source, decoding_predictor(source, args, "caption"), [image for _, image in rows])
    if args.image:
        for image, result in zip(args.image, results, strict=True):
            print(json.dumps({"image": image, **result}, ensure_ascii=False))
        return
    lines = [
        json.dumps({"id": id_, "image": str(image), "caption": result["caption"]}, ensure_ascii=False)
        for (id_, image), result in zip(rows, results, strict=True)
    ]
    emit(lines, args.out, "caption")
