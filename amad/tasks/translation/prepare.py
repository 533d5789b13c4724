"""The ``prepare`` stage's work for translation: any translation source -> ``data/prepared/``.

Output: ``{train,val,test}.jsonl`` (``{"id", "image", "source", "target"}``, images under ``images/``),
``vocabulary.json`` (the joint byte-level BPE learned from the training sentences of both languages,
:mod:`amad.data.saved_tokenizer`'s payload) and ``summary.json``: per split the pairs, and per side
the sentences longer than the context (``truncated``) and the longest one; the languages, the
context, the vocabulary's size and special ids.

Sentences longer than ``data.context_length`` tokens are cut by the tokenizer (the end token kept);
``prepare`` counts them per split and side and refuses, writing nothing, where a split's share on
either side is above ``data.max_truncated``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from amad.atomic import atomic_dir
from amad.data.images import import_image
from amad.data.preprocess import PAD_TOKEN_ID, Preprocess
from amad.errors import DataError
from amad.tasks.translation.config import SPLITS, DataConfig
from amad.tasks.translation.sources import (
    SentencePair,
    generate_scenes,
    read_manifest,
    read_multi30k,
    write_manifest,
)

SUMMARY = "summary.json"
VOCABULARY = "vocabulary.json"
SIDES = ("source", "target")


def read_source(config: DataConfig) -> tuple[dict[str, list[SentencePair]], dict[str, str]]:
    """Every split's pairs from the configured files, and per split what its records come from (for
    messages)."""
    root = Path(config.path)
    if config.source == "multi30k":
        return read_multi30k(config), {s: str(root / "task1" / f"*{getattr(config.splits, s)}*") for s in SPLITS}
    files = {split: root / getattr(config.splits, split) for split in SPLITS}
    return {split: read_manifest(path) for split, path in files.items()}, {s: str(p) for s, p in files.items()}


def import_images(
    splits: dict[str, list[SentencePair]], config: DataConfig, origins: dict[str, str], out: Path
) -> dict[str, list[SentencePair]]:
    """Check that every image exists and decodes, hard-link (or copy) it under ``out/images`` and
    rewrite the paths."""
    images = Path(config.path) / config.images
    imported = {}
    for split, pairs in splits.items():
        rewritten = []
        for pair in pairs:
            imported_path = import_image(images, pair.image, out, f"{origins[split]}: {split} pair {pair.id!r}")
            rewritten.append(SentencePair(pair.id, imported_path, pair.source, pair.target))
        imported[split] = rewritten
    return imported


def sentence_tokenizer(config: DataConfig, train: list[SentencePair]) -> Preprocess:
    """The joint tokenizer of both languages (as a text-only :class:`Preprocess`), learned from the
    training split."""
    from amad.data.saved_tokenizer import learn_tokenizer

    texts = [text for pair in train for text in (pair.source, pair.target)]
    vocabulary = config.vocabulary
    payload = learn_tokenizer(texts, vocabulary.size, vocabulary.min_frequency, vocabulary.lowercase)
    return Preprocess(image_size=1, context_length=config.context_length, tokenizer="learned", vocabulary=payload)


def length_report(pairs: list[SentencePair], tokenizer: Preprocess) -> dict:
    """``{pairs, source: {truncated, longest_tokens, longest}, target: {...}}`` of one split."""
    report: dict = {"pairs": len(pairs)}
    for side in SIDES:
        counts = [(tokenizer.token_count(getattr(p, side)), getattr(p, side)) for p in pairs]
        longest = max(counts, default=(0, ""))
        report[side] = {
            "truncated": sum(count > tokenizer.context_length for count, _ in counts),
            "longest_tokens": longest[0],
            "longest": longest[1],
        }
    return report


def _refuse_truncation(summary: dict, config: DataConfig) -> None:
    for split, report in summary["splits"].items():
        for side in SIDES:
            entry = report[side]
            share = entry["truncated"] / max(report["pairs"], 1)
            if share > config.max_truncated:
                language = getattr(config.languages, side)
                raise DataError(
                    f"data.max_truncated: {entry['truncated']} of {report['pairs']} {split} {side} sentences "
                    f"({language}, {share:.1%}) are longer than data.context_length {config.context_length} tokens, "
                    f"above the {config.max_truncated:.1%} allowed; the longest ({entry['longest_tokens']} tokens): "
                    f"{entry['longest'][:80]!r}. Raise data.context_length (or data.max_truncated)"
                )


def prepare(
    config: DataConfig, seed: int, out: str | Path, check_splits: Callable | None = None, log: Callable | None = None
) -> dict:
    """Write ``out`` atomically; returns the summary stored in ``summary.json``.

    ``check_splits({split: pairs})`` may refuse the splits (raising) before any image is written.

    Raises:
        DataError: a bad source file (naming it and the line), or a split with more sentences longer
            than the context than ``data.max_truncated`` allows; nothing is written.
    """
    with atomic_dir(out) as staging:
        if config.source == "shapes":
            if check_splits is not None:
                check_splits({split: getattr(config.shapes, split) for split in SPLITS})
            splits = generate_scenes(config, seed, staging)
        else:
            read, origins = read_source(config)
            if check_splits is not None:
                check_splits({split: len(pairs) for split, pairs in read.items()})
            splits = import_images(read, config, origins, staging)
        tokenizer = sentence_tokenizer(config, splits["train"])
        start, end = tokenizer.special_ids()
        summary = {
            "splits": {split: length_report(pairs, tokenizer) for split, pairs in splits.items()},
            "languages": {"source": config.languages.source, "target": config.languages.target},
            "context_length": config.context_length,
            "max_truncated": config.max_truncated,  # a Hugging Face source tokenizer is counted by the dataset
            "vocabulary": {
                "kind": "learned",
                "size": tokenizer.vocab_size(),
                "start": start,
                "end": end,
                "pad": PAD_TOKEN_ID,
            },
        }
        _refuse_truncation(summary, config)
        for split, pairs in splits.items():
            write_manifest(staging / f"{split}.jsonl", pairs)
        (staging / VOCABULARY).write_text(tokenizer.vocabulary)
        (staging / SUMMARY).write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    if log is not None:
        for split, report in summary["splits"].items():
            sides = ", ".join(
                f"{report[side]['truncated']} {getattr(config.languages, side)} longer than {config.context_length} "
                f"tokens (longest {report[side]['longest_tokens']})"
                for side in SIDES
            )
            log(f"{split}: {report['pairs']} sentence pairs; {sides}")
        log(
            f"vocabulary: joint BPE of {config.languages.source} and {config.languages.target}, {summary['vocabulary']['size']} tokens"
        )
    return summary
