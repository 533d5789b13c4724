"""The words of the training questions, kept with a VQA model, so that ``amad predict`` can say
when a question is mostly about things the model never saw (its answer is then a guess among the
answers it knows)."""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
MAX_WORDS = 20_000  # the most frequent training words kept (a VQAv2-sized vocabulary has ~15k)


def words_of(text: str) -> list[str]:
    return WORD.findall(text.lower())


def training_words(train_manifest: Path, limit: int = MAX_WORDS) -> list[str]:
    """The ``limit`` most frequent words of a prepared training manifest's questions, sorted."""
    import json

    counts: Counter[str] = Counter()
    with open(train_manifest, encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                counts.update(words_of(json.loads(line)["question"]))
    return sorted(word for word, _ in counts.most_common(limit))


def unknown_words(question: str, known: frozenset[str]) -> list[str] | None:
    """The question's words the model never saw in training, when they are most of its words; else None."""
    words = words_of(question)
    unknown = [w for w in words if w not in known]
    return unknown if words and len(unknown) * 2 > len(words) else None


def warn_unknown(where: str, question: str, known: frozenset[str] | None, answers: int) -> bool:
    """Print a warning (stderr) when most of ``question``'s words are unknown; True if it warned."""
    unknown = None if known is None else unknown_words(question, known)
    if unknown is None:
        return False
    print(
        f"warning: {where}: {len(unknown)} of {len(words_of(question))} words never appear in the questions this "
        f"model was trained on ({', '.join(unknown[:6])}): its answer is a guess among the {answers} it knows",
        file=sys.stderr,
    )
    return True
