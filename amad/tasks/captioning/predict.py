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

from amad.atomic import atomic_file
from amad.contracts.graph import ModelSource
from amad.data.paths import checked_relative_path
from amad.data.text import LineProblems, parse_json_line, read_utf8
from amad.errors import AmadError, ConfigError, DataError
from amad.generation.config import GenerationConfig

BATCH = 16  # images per decode run


def predict_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--image", action="append", default=[], help="an image file (repeat for several)")
    parser.add_argument("--manifest", help='JSON lines {"id": ..., "image": ...}, paths relative to its folder')
    parser.add_argument("--out", help="with --manifest: the JSONL file to write (default: print)")
    parser.add_argument("--beams", type=int, default=None, help="beam search with this many beams (default: greedy)")
    parser.add_argument("--max-length", type=int, default=None, help="longest caption in tokens (default: the model's)")
    parser.add_argument("--length-penalty", type=float, default=1.0, help="beam scores over length ** this")
    parser.add_argument("--no-repeat-ngram", type=int, default=0, help="forbid repeating n-grams of this size (0: off)")


def _predictor(source: ModelSource, args: argparse.Namespace):
    """The task's predictor over the source's graphs, with the decoding flags (local models only)."""
    from amad.contracts.task import get_task

    predictor = get_task(source.task_name).predictor(source.graphs)
    if args.beams is None and args.max_length is None and args.no_repeat_ngram == 0 and args.length_penalty == 1.0:
        return predictor
    if not hasattr(predictor, "with_settings"):
        raise AmadError(f"{source.origin}: a server decodes with its own settings; drop --beams / --max-length")
    model_max_length = predictor.max_length
    if args.max_length is not None and args.max_length > model_max_length:
        raise AmadError(f"--max-length {args.max_length}: the model's captions have at most {model_max_length} tokens")
    config = GenerationConfig(
        beams=1 if args.beams is None else args.beams,
        max_length=args.max_length or model_max_length,
        min_length=1,
        length_penalty=args.length_penalty,
        no_repeat_ngram=args.no_repeat_ngram,
    )
    try:
        config.validate("--")
    except ConfigError as error:
        raise AmadError(str(error).removeprefix("params.yaml: ").replace("--.", "--").replace("_", "-")) from None
    return predictor.with_settings(generation=config)  # AmadError above the model's longest caption


def read_image_manifest(path: str | Path) -> list[tuple[str, Path]]:
    """``(id, image path)`` per line of an image manifest; DataError names the file and line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"--manifest {path}: no such file")
    rows, problems = [], LineProblems(path)
    for number, line in enumerate(read_utf8(path).split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        with problems.record():
            data = parse_json_line(line, where, {"id": str, "image": str})
            image = path.parent / checked_relative_path(data["image"], where)
            if not image.is_file():
                raise DataError(f"{where}: image {data['image']} not found (relative to {path.parent})")
            rows.append((data["id"], image))
    problems.raise_any()
    if not rows:
        raise DataError(f"--manifest {path}: no images")
    return rows


def caption_images(source: ModelSource, predictor, images: list[Path]) -> list[dict]:
    """``{"caption", "tokens"}`` per image (tokens without padding), decoded in batches of :data:`BATCH`."""
    results = []
    for start in range(0, len(images), BATCH):
        pixels = np.stack([source.preprocess.image_array(image) for image in images[start : start + BATCH]])
        tokens = np.asarray(predictor({"pixels": pixels})["tokens"])
        for row in tokens:
            ids = [int(i) for i in row]
            caption = source.preprocess.decode(ids)
            while ids and ids[-1] == 0:  # the padding (id 0 pads every amad vocabulary)
                ids.pop()
            results.append({"caption": caption, "tokens": ids})
    return results


def predict(source: ModelSource, args: argparse.Namespace) -> None:
    if bool(args.image) == bool(args.manifest):
        raise AmadError("a captioning model captions images: give --image (repeatable) or --manifest, not both")
    if args.out and not args.manifest:
        raise AmadError("--out writes a --manifest's captions; --image prints them")
    if args.image:
        for image in args.image:
            if not Path(image).is_file():
                raise AmadError(f"--image {image}: no such file")
        rows = [(None, Path(image)) for image in args.image]
    else:
        rows = read_image_manifest(args.manifest)
    results = caption_images(source, _predictor(source, args), [image for _, image in rows])
    if args.image:
        for image, result in zip(args.image, results, strict=True):
            print(json.dumps({"image": image, **result}, ensure_ascii=False))
        return
    lines = [
        json.dumps({"id": id_, "image": str(image), "caption": result["caption"]}, ensure_ascii=False)
        for (id_, image), result in zip(rows, results, strict=True)
    ]
    if args.out is None:
        print("\n".join(lines))
        return
    with atomic_file(args.out) as stream:
        stream.write("".join(line + "\n" for line in lines))
    print(f"{len(lines)} captions -> {args.out}")
