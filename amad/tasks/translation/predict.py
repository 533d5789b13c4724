"""``amad predict`` for translation: each source sentence translated with its image as context, from
any model source (a saved model folder, its export ``exported/NAME`` with ``encoder.onnx`` and
``decoder.onnx``, a Triton server that runs the decode loop), through the task's predictor.

``--image x.jpg --text "a red shape ..."`` (both repeatable, paired in order) prints one JSON object
per sentence (``image``, ``source``, ``translation``, ``tokens``); ``--manifest pairs.jsonl`` reads JSON
lines ``{"id": ..., "image": ..., "source": ...}`` (image paths relative to the manifest's folder;
other fields, such as a reference ``target``, are ignored) and writes ``{"id", "image", "source",
"translation"}`` lines to ``--out`` (or prints them). A text-only model (``vision: null``) needs no
image. ``--beams`` and the other decoding flags apply to local models; a server decodes with its own
settings (``amad serve ... --beams``). numpy alone with an export: no torch is loaded.
"""

from __future__ import annotations

import argparse
import json
import sys
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

BATCH = 16  # sentences per decode run


def predict_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--text", action="append", default=[], help="a source sentence (repeat for several)")
    parser.add_argument("--image", action="append", default=[], help="the image of each --text, in the same order")
    parser.add_argument(
        "--manifest", help='JSON lines {"id": ..., "image": ..., "source": ...}, image paths relative to its folder'
    )
    parser.add_argument("--out", help="with --manifest: the JSONL file to write (default: print)")
    decoding_arguments(parser, "translation")


def translate(source: ModelSource, predictor, rows: list[tuple[Path | None, str]]) -> list[dict]:
    """``{"translation", "tokens"}`` per ``(image, sentence)`` (tokens without padding), decoded in
    batches of :data:`BATCH`; the images are read only where the model reads them."""
    results = []
    for start in range(0, len(rows), BATCH):
        chunk = rows[start : start + BATCH]
        batch = {"source": source.preprocess.source.token_ids([text for _, text in chunk])}
        if predictor.image:
            batch["pixels"] = np.stack([source.preprocess.image_array(image) for image, _ in chunk])
        for row in np.asarray(predictor(batch)["tokens"]):
            results.append({"translation": source.preprocess.decode([int(i) for i in row]), "tokens": unpadded(row)})
    return results


def _flag_rows(args: argparse.Namespace, image: bool) -> list[tuple[Path | None, str]]:
    if not args.text:
        raise AmadError("a translation model translates sentences: give --text (with --image) or --manifest")
    if image and len(args.image) != len(args.text):
        raise AmadError(
            f"this model reads each sentence's image: give one --image per --text ({len(args.text)} --text, "
            f"{len(args.image)} --image)"
        )
    if not image and args.image:
        print("note: this model reads no image (a text-only model): --image is not used", file=sys.stderr)
    images = [checked_file(path, "--image") for path in args.image] if image else [None] * len(args.text)
    return list(zip(images, args.text, strict=True))


def predict(source: ModelSource, args: argparse.Namespace) -> None:
    if bool(args.text or args.image) == bool(args.manifest):
        raise AmadError("a translation model translates sentences: give --text (with --image) or --manifest, not both")
    if args.out and not args.manifest:
        raise AmadError("--out writes a --manifest's translations; --text prints them")
    predictor = decoding_predictor(source, args, "translation")
    if args.manifest:
        records = read_request_manifest(args.manifest, {"id": str, "image": str, "source": str}, image=predictor.image)
        for record in records:  # every sentence fits the context, before anything is decoded or written
            source.preprocess.source.check_text(
                record["source"], f"{args.manifest}: id {record['id']!r}", "source sentence"
            )
        rows = [(record["image"], record["source"]) for record in records]
    else:
        rows = _flag_rows(args, predictor.image)
        for _, text in rows:
            source.preprocess.source.check_text(text, "--text", "sentence")
    results = translate(source, predictor, rows)
    if not args.manifest:
        for (image, text), result in zip(rows, results, strict=True):
            print(
                json.dumps(
                    {"image": None if image is None else str(image), "source": text, **result}, ensure_ascii=False
                )
            )
        return
    lines = [
        json.dumps(
            {
                "id": record["id"],
                "image": None if record["image"] is None else str(record["image"]),
                "source": record["source"],
                "translation": result["translation"],
            },
            ensure_ascii=False,
        )
        for record, result in zip(records, results, strict=True)
    ]
    emit(lines, args.out, "translation")
