"""The ``prepare`` stage's work for captioning: any caption source -> ``data/prepared/``.

Output: ``{train,val,test}.jsonl`` and ``images/`` as for retrieval (one image a line with all its
captions), ``vocabulary.json`` (where the vocabulary is learned: the byte-level BPE learned from the training
captions, :mod:`amad.data.saved_tokenizer`'s payload) and ``summary.json``: per split the images,
captions, captions longer than the context (``truncated``) and the longest caption's token count;
the context, the vocabulary's kind, size and special ids.

Captions longer than ``data.context_length`` tokens are cut by the tokenizer (the end token kept);
``prepare`` counts them per split and refuses, writing nothing, where a split's share is above
``data.max_truncated``.
"""

from __future__ import annotations

import json
from pathlib import Path

from amad.atomic import atomic_dir
from amad.data.captions.records import split_records
from amad.data.captions.sources import ImageRecord, write_records
from amad.data.preprocess import PAD_TOKEN_ID, Preprocess
from amad.errors import DataError
from amad.tasks.captioning.config import DataConfig

SUMMARY = "summary.json"
VOCABULARY = "vocabulary.json"


def caption_tokenizer(config: DataConfig, train: list[ImageRecord]) -> Preprocess:
    """The captions' tokenizer (as a text-only :class:`Preprocess`): a byte-level BPE learned from the
    training captions, or open_clip's."""
    if config.vocabulary.kind == "open_clip":
        return Preprocess(image_size=1, context_length=config.context_length)
    from amad.data.saved_tokenizer import learn_tokenizer

    captions = [caption for record in train for caption in record.captions]
    payload = learn_tokenizer(captions, config.vocabulary.size, config.vocabulary.min_frequency)
    return Preprocess(image_size=1, context_length=config.context_length, tokenizer="learned", vocabulary=payload)


def length_report(records: list[ImageRecord], tokenizer: Preprocess) -> dict:
    """``{images, captions, truncated, longest_tokens, longest}`` of one split's captions."""
    counts = [(tokenizer.token_count(c), c) for r in records for c in r.captions]
    longest = max(counts, default=(0, ""))
    return {
        "images": len(records),
        "captions": len(counts),
        "truncated": sum(count > tokenizer.context_length for count, _ in counts),
        "longest_tokens": longest[0],
        "longest": longest[1],
    }


def prepare(config: DataConfig, seed: int, out: str | Path, check_splits=None, log=None) -> dict:
    """Write ``out`` atomically; returns the summary stored in ``summary.json``.

    ``check_splits({split: training pairs})`` may refuse the splits (raising) before any image is
    written; ``log`` receives a short report.

    Raises:
        DataError: a split has more captions longer than the context than ``data.max_truncated``
            allows (naming the split and its longest caption); nothing is written.
    """
    with atomic_dir(out) as staging:
        splits = split_records(config, seed, staging, check_splits)
        tokenizer = caption_tokenizer(config, splits["train"])
        start, end = tokenizer.special_ids()
        summary = {
            "splits": {split: length_report(records, tokenizer) for split, records in splits.items()},
            "context_length": config.context_length,
            "vocabulary": {
                "kind": config.vocabulary.kind,
                "size": tokenizer.vocab_size(),
                "start": start,
                "end": end,
                "pad": PAD_TOKEN_ID,
            },
        }
        for split, report in summary["splits"].items():
            share = report["truncated"] / max(report["captions"], 1)
            if share > config.max_truncated:
                raise DataError(
                    f"data.max_truncated: {report['truncated']} of {report['captions']} {split} captions "
                    f"({share:.1%}) are longer than data.context_length {config.context_length} tokens, above "
                    f"the {config.max_truncated:.1%} allowed; the longest ({report['longest_tokens']} tokens): "
                    f"{report['longest'][:80]!r}. Raise data.context_length (or data.max_truncated)"
                )
        for split, records in splits.items():
            write_records(staging / f"{split}.jsonl", records)
        if tokenizer.vocabulary is not None:
            (staging / VOCABULARY).write_text(tokenizer.vocabulary)
        (staging / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")
    if log is not None:
        for split, report in summary["splits"].items():
            log(
                f"{split}: {report['images']} images, {report['captions']} captions, {report['truncated']} longer than "
                f"{config.context_length} tokens (longest {report['longest_tokens']})"
            )
        log(f"vocabulary: {config.vocabulary.kind}, {summary['vocabulary']['size']} tokens")
    return summary
