"""``amad predict`` for VQA: answers from any model source (a saved model folder, an export, a
Triton server), through the task's predictor.

The model source decides the preprocessing (stored with it), so predictions use exactly the
preprocessing the model was trained with. The code is numpy alone: with an export, no torch is loaded.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from amad.atomic import atomic_file
from amad.contracts.graph import ModelSource, Predictor
from amad.data.preprocess import Preprocess
from amad.errors import AmadError
from amad.tasks.vqa.manifest import read_manifest
from amad.tasks.vqa.words import unknown_words, warn_unknown


@dataclass
class Answerer:
    """The VQA predictor over a model's ``model`` graph (torch or ONNX), with the answer vocabulary
    and the preprocessing stored with the model."""

    predictor: Predictor
    answers: list[str]
    preprocess: Preprocess
    words: frozenset[str] | None = None  # the training questions' words (None: not kept with the model)

    def top_k(self, pixels: np.ndarray, tokens: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        """Top-``k`` (answer, probability) per sample of a batch."""
        logits = np.asarray(self.predictor({"pixels": pixels, "tokens": tokens})["logits"], np.float32)
        probabilities = np.exp(logits - logits.max(-1, keepdims=True))
        probabilities /= probabilities.sum(-1, keepdims=True)
        order = np.argsort(-probabilities, axis=-1, kind="stable")[:, : min(k, len(self.answers))]
        return [[(self.answers[i], float(row[i])) for i in ranks] for row, ranks in zip(probabilities, order)]


def answerer(source: ModelSource) -> Answerer:
    """The VQA predictor over a model source's graphs, with its answers and preprocessing."""
    from amad.contracts.task import get_task

    words = source.state.get("words")
    return Answerer(
        get_task(source.task_name).predictor(source.graphs),
        source.state["answers"],
        source.preprocess,
        None if words is None else frozenset(words),
    )


def predict_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--image", help="an image file")
    parser.add_argument("--question", help="the question about --image")
    parser.add_argument("--manifest", help="JSONL manifest of questions (answers optional) instead")
    parser.add_argument("--out", help="where --manifest predictions go (JSONL)")
    parser.add_argument("--top-k", type=int, default=1, help="print / write the k most likely answers")


def predict(source: ModelSource, args: argparse.Namespace) -> None:
    """Answers for ``--image`` and ``--question`` (printed, one per line with its probability), or
    for every question of ``--manifest`` (written to ``--out``)."""
    if not ((args.image and args.question) or (args.manifest and args.out)):
        raise AmadError("a VQA model answers: give --image and --question, or --manifest and --out")
    if args.top_k < 1:
        raise AmadError("--top-k must be >= 1")
    model = answerer(source)
    if args.manifest:
        count = predict_manifest(model, args.manifest, args.out, top_k=args.top_k)
        print(f"wrote {count} predictions to {args.out}")
        return
    for answer, probability in predict_question(model, args.image, args.question, args.top_k):
        print(f"{answer}\t{probability:.4f}")


def predict_question(predictor: Answerer, image: str | Path, question: str, top_k: int = 1) -> list[tuple[str, float]]:
    """Top-``k`` (answer, probability) for one question about one image."""
    if not Path(image).is_file():
        raise AmadError(f"--image {image}: no such file")
    predictor.preprocess.check_text(question, "--question", "question")
    warn_unknown("--question", question, predictor.words, len(predictor.answers))
    pixels = predictor.preprocess.image_array(image)[None]
    tokens = predictor.preprocess.token_ids([question])
    return predictor.top_k(pixels, tokens, top_k)[0]


def predict_manifest(
    predictor: Answerer, manifest: str | Path, out: str | Path, *, top_k: int = 1, batch_size: int = 64
) -> int:
    """Write ``{"id", "answer", "score"}`` (+ ``"top_k"`` when k > 1) per line; returns the count."""
    import json

    records = read_manifest(manifest, require_answers=False)
    for record in records:  # every question fits the model's context, before anything is written
        predictor.preprocess.check_text(record.question, f"{manifest}: id {record.id!r}", "question")
    if predictor.words is not None:
        guesses = [r.id for r in records if unknown_words(r.question, predictor.words) is not None]
        if guesses:
            print(
                f"warning: {manifest}: {len(guesses)} of {len(records)} questions are mostly words this model never "
                f"saw in training (ids {', '.join(guesses[:5])}{', ...' if len(guesses) > 5 else ''}): their answers "
                f"are guesses among the {len(predictor.answers)} it knows",
                file=sys.stderr,
            )
    root = Path(manifest).parent
    with atomic_file(out) as stream:
        for start in range(0, len(records), batch_size):
            batch = records[start : start + batch_size]
            pixels = np.stack([predictor.preprocess.image_array(root / r.image) for r in batch])
            tokens = predictor.preprocess.token_ids([r.question for r in batch])
            for record, ranked in zip(batch, predictor.top_k(pixels, tokens, top_k)):
                line = {"id": record.id, "answer": ranked[0][0], "score": round(ranked[0][1], 6)}
                if top_k > 1:
                    line["top_k"] = [{"answer": a, "score": round(s, 6)} for a, s in ranked]
                stream.write(json.dumps(line) + "\n")
    return len(records)
