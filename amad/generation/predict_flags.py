"""What ``amad predict`` shares across the generative tasks: the decoding flags (``--beams``,
``--max-length``, ``--length-penalty``, ``--no-repeat-ngram``), the predictor they configure, the
output ids without padding, and where the JSON lines go (printed, or ``--out`` written whole)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from amad.atomic import atomic_file
from amad.contracts.graph import ModelSource
from amad.data.paths import checked_relative_path
from amad.data.text import LineProblems, parse_json_line, read_utf8
from amad.errors import AmadError, ConfigError, DataError
from amad.generation.config import GenerationConfig


def decoding_arguments(parser: argparse.ArgumentParser, noun: str) -> None:
    """The decoding flags (``noun``: what the model writes, e.g. ``caption``)."""
    parser.add_argument("--beams", type=int, default=None, help="beam search with this many beams (default: greedy)")
    parser.add_argument("--max-length", type=int, default=None, help=f"longest {noun} in tokens (default: the model's)")
    parser.add_argument("--length-penalty", type=float, default=1.0, help="beam scores over length ** this")
    parser.add_argument("--no-repeat-ngram", type=int, default=0, help="forbid repeating n-grams of this size (0: off)")


def decoding_predictor(source: ModelSource, args: argparse.Namespace, noun: str):
    """The task's predictor over the source's graphs, with the decoding flags (local models only:
    a server decodes with its own settings)."""
    from amad.contracts.task import get_task

    predictor = get_task(source.task_name).predictor(source.graphs)
    if args.beams is None and args.max_length is None and args.no_repeat_ngram == 0 and args.length_penalty == 1.0:
        return predictor
    if not hasattr(predictor, "with_settings"):
        raise AmadError(f"{source.origin}: a server decodes with its own settings; drop --beams / --max-length")
    model_max_length = predictor.max_length
    if args.max_length is not None and args.max_length > model_max_length:
        raise AmadError(f"--max-length {args.max_length}: the model's {noun}s have at most {model_max_length} tokens")
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
    return predictor.with_settings(generation=config)


def unpadded(row) -> list[int]:
    """One output's ids without the right padding (id 0 pads every amad vocabulary)."""
    ids = [int(i) for i in row]
    while ids and ids[-1] == 0:
        ids.pop()
    return ids


def emit(lines: list[str], out: str | None, noun: str) -> None:
    """JSON ``lines`` printed, or written to ``out`` whole (nothing half-written on failure)."""
    if out is None:
        print("\n".join(lines))
        return
    with atomic_file(out) as stream:
        stream.write("".join(line + "\n" for line in lines))
    print(f"{len(lines)} {noun}s -> {out}")


def checked_file(path: str, flag: str) -> Path:
    """``path`` as a Path; AmadError naming ``flag`` when no such file exists."""
    if not Path(path).is_file():
        raise AmadError(f"{flag} {path}: no such file")
    return Path(path)


def read_request_manifest(path: str | Path, fields: dict[str, type], image: bool = True) -> list[dict[str, Any]]:
    """The JSON lines of ``--manifest``, each with ``fields`` (``"image"`` among them, or, where
    ``image`` is False, optional) and the image as a Path relative to the manifest's folder (None
    where absent); DataError names the file and line (every line is checked first)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"--manifest {path}: no such file")
    rows, problems = [], LineProblems(path)
    for number, line in enumerate(read_utf8(path).split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        with problems.record():
            data = parse_json_line(line, where, fields if image else {k: v for k, v in fields.items() if k != "image"})
            for key, kind in fields.items():
                if kind is str and isinstance(data.get(key), str) and not data[key].strip():
                    raise DataError(f"{where}: field '{key}' is empty")
            if "image" in data:
                if not isinstance(data["image"], str):
                    raise DataError(f"{where}: field 'image' must be a string")
                raw, data["image"] = data["image"], path.parent / checked_relative_path(data["image"], where)
                if not data["image"].is_file():
                    raise DataError(f"{where}: image {raw} not found (relative to {path.parent})")
            else:
                data["image"] = None
            rows.append(data)
    problems.raise_any()
    if not rows:
        raise DataError(f"--manifest {path}: no lines")
    return rows
